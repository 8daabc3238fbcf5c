"""What a dialable value looks like: one set of rules for the call flow, the API and inbound.

The API accepts exactly what the call flow can dial, because both check with these patterns.
"""

from __future__ import annotations

import re

# original_cld is '2way_<CLD>' (the seed's convention).
CLD_PREFIX = "2way_"
# What may stand in a PJSIP dial string's user part: no '@', '/', '&', ',' or blanks, which
# Asterisk would read as separators (a row must never dial more than it says).
DIAL_STRING = re.compile(r"\+?[0-9A-Za-z*#._-]{1,64}")
# Digest user names and Call-IDs travel in SIP headers: printable ASCII without blanks or quotes.
TOKEN = re.compile(r"[!#-&(-~]{1,128}")
CALL_ID = re.compile(r"[!#-&(-~]{1,200}")
HA1 = re.compile(r"[0-9a-fA-F]{32}")
