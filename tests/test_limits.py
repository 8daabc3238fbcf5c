"""TWOWAY_MAX_CPS: the originate token bucket."""

from __future__ import annotations

import asyncio
import itertools

from stasis_app.callflow.limits import RateLimiter


async def test_rate_limiter_spaces_originates() -> None:
    limiter = RateLimiter(rate=20)
    loop = asyncio.get_running_loop()
    start = loop.time()
    stamps = []
    for _ in range(6):
        await limiter.acquire()
        stamps.append(loop.time() - start)
    # One token every 1/20 s: a lower bound, so a slow machine cannot fail it.
    assert all(b - a >= 0.05 * 0.9 for a, b in itertools.pairwise(stamps))


async def test_rate_limiter_serves_waiters_in_order() -> None:
    limiter = RateLimiter(rate=50)
    order: list[int] = []

    async def take(n: int) -> None:
        await limiter.acquire()
        order.append(n)

    await asyncio.gather(*(take(n) for n in range(5)))
    assert order == [0, 1, 2, 3, 4]
