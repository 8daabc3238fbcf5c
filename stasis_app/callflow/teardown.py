"""The end of every call: hang up what lives, destroy the bridge, collect the final causes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from stasis_app.callflow import recovery, timing
from stasis_app.callflow.call import Call
from stasis_app.callflow.legs import Leg
from stasis_app.domain.ari_errors import AriError


async def hang_up(call: Call, leg: Leg) -> None:
    """Once per leg; a 404 means the channel is gone (its last events may be queued)."""
    if leg.destroyed or leg.hung_up_by_us:
        return
    leg.hung_up_by_us = True
    try:
        if not await call.ari.hangup(leg.channel_id):  # 404: no such channel (any more)
            call.inbox.observe_queued()  # its last events may be here already: keep the causes
            leg.gone_for_good(call.now())
    except AriError as exc:
        call.log.warning(
            "hangup failed: %s",
            exc,
            extra={"action": "hangup_failed", "channel_id": leg.channel_id},
        )


async def tear_down(call: Call, release_identities: Callable[[], Awaitable[None]]) -> None:
    """Hang up what is live, destroy the bridge, wait (bounded) for the final causes, then
    free the identity objects."""
    live = call.legs.live()
    for leg in live:
        if not leg.ending:  # one Asterisk is hanging up already needs no request of ours
            await hang_up(call, leg)
    if call.bridge_id is not None:
        await call.quietly(call.ari.destroy_bridge(call.bridge_id))
    deadline = call.now() + timing.TEARDOWN
    while any(not leg.destroyed and (leg.hung_up_by_us or leg.ending) for leg in live):
        if await call.inbox.next(call.wake(deadline), stoppable=False) is None:
            if call.now() >= deadline:
                break
            await recovery.poll(call, [leg for leg in live if leg.hung_up_by_us or leg.ending])
    for leg in live:
        if not leg.destroyed:  # its end never came: make sure after all
            await hang_up(call, leg)
    now = call.now()
    for leg in live:
        leg.end(now)
    await release_identities()
