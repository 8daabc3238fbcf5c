"""Bounded waits on what fakes observe: woken by each change, never by sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# Bound of every wait on something the call flow does at once (a busy machine included); waits
# on a timer of the call flow add that timer to it.
WAIT = 5.0


class Changes:
    """Wakes every waiter when anything observable happened (a request, a write, an end)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def until(self, check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        """Until ``check()`` holds; AssertionError naming ``what`` after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while not check():
                    await self._event.wait()
        except TimeoutError:
            raise AssertionError(f"not within {timeout} s: {what}") from None
