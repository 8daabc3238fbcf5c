"""One rule for an ARI request without a definite answer (a timeout, a 5xx, a reset connection).

Asterisk may or may not have acted on it: an originate may have created the channel, a bridge
may exist. Never guess. Every object we create has a deterministic id, so ask Asterisk about
that id, with bounded backoff, until it answers definitely: it exists, or it does not (404).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from stasis_app.callflow import timing
from stasis_app.callflow.call import Call
from stasis_app.domain.ari_errors import AriError, AriNotFound, AriUnavailable

T = TypeVar("T")


async def look_up(call: Call, what: str, look: Callable[[], Awaitable[T]]) -> T | None:
    """The object, or None when Asterisk says there is none (404).

    Raises the last AriUnavailable when no definite answer came within ``timing.RESOLVE``
    seconds: the caller must then assume neither.
    """
    deadline = call.now() + timing.RESOLVE
    delay = timing.RESOLVE_FIRST
    while True:
        try:
            return await look()
        except AriNotFound:
            return None
        except AriUnavailable as exc:
            if call.now() + delay > deadline:
                call.log.warning(
                    "no definite answer about %s: %s", what, exc, extra={"action": "unresolved"}
                )
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, timing.RESOLVE_MAX_DELAY)


def describe(exc: AriError) -> str:
    """What happened, for ``result_reason``: a timeout, a reset, or the 5xx with its status."""
    if exc.status is None:
        return f"no response ({exc.message})"
    return f"{exc.status} {exc.message}".strip()
