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

    async def acquire(self) -> None:
        async with self._lock:
            loop = asyncio.get_running_loop()
            while True:
                now = loop.time()
                if self._last:
                    self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self._rate)
