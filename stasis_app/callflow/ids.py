"""Deterministic ARI ids: every channel or bridge maps back to its request and attempt.

``<prefix>-<request id>-<attempt><leg>``: after a restart, ``GET /channels`` alone tells which
request a live channel belongs to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stasis_app.domain.request import LegName

BRIDGE = "br"


@dataclass(frozen=True, slots=True)
class ParsedId:
    request_id: int
    attempt: int
    kind: str  # LegName.A | LegName.B | BRIDGE


class Ids:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._pattern = re.compile(rf"{re.escape(prefix)}-(\d+)-(\d+)(a|b|br)")

    def channel(self, request_id: int, attempt: int, leg: LegName) -> str:
        return f"{self.prefix}-{request_id}-{attempt}{leg}"

    def bridge(self, request_id: int, attempt: int) -> str:
        return f"{self.prefix}-{request_id}-{attempt}{BRIDGE}"

    def parse(self, ari_id: str) -> ParsedId | None:
        match = self._pattern.fullmatch(ari_id)
        if match is None:
            return None
        return ParsedId(int(match.group(1)), int(match.group(2)), match.group(3))
