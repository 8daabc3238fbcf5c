"""Originates per second (token bucket): TWOWAY_MAX_CPS, per instance."""

from __future__ import annotations

import asyncio


class RateLimiter:
    def __init__(self, rate: float, burst: float = 1.0) -> None:
        self._rate = rate
        self._burst = max(burst, 1.0)
        self._tokens = self._burst
        self._last = 0.0
        self._lock = asyncio.Lock()  # FIFO: callers go out in the order they asked

    def _take(self) -> bool:
        now = asyncio.get_running_loop().time()
        if self._last:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def try_acquire(self) -> bool:
        """A token at once, or False: never ahead of a caller already waiting."""
        return not self._lock.locked() and self._take()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                if self._take():
                    return
                await asyncio.sleep((1 - self._tokens) / self._rate)
