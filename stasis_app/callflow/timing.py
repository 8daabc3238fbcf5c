"""How long the call flow waits on its own: read at each use (``timing.GUARD``), so a test may
shorten one for a run."""

from __future__ import annotations

# Beyond the ring timeout we hand to Asterisk: how long to wait for its verdict ourselves.
GUARD = 10.0
# How long to wait for ChannelDestroyed (final causes) after hanging up.
TEARDOWN = 10.0
# Recovered legs may belong to the lost instance's Stasis app, whose events nobody receives:
# look them up by id this often instead of waiting for events.
RECOVERED_POLL = 1.0
# How long a failed bridging waits for the hangup events that may explain it.
SETTLE = 2.0
# An ARI request without a definite answer is resolved by looking its object up by id: first
# after this long, doubling up to RESOLVE_MAX_DELAY, for at most RESOLVE seconds.
RESOLVE_FIRST = 0.2
RESOLVE_MAX_DELAY = 2.0
RESOLVE = 30.0
# A hang-up without a definite answer is sent again, at most this far apart, until Asterisk
# says the channel is gone or its end event arrives.
HANGUP_RETRY_MAX = 5.0
