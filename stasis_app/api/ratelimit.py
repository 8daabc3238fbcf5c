"""Token buckets keyed by client: API requests per token (TWOWAY_API_RATE_LIMIT per second),
failed authentications per client address (TWOWAY_API_AUTH_FAILURES_PER_MINUTE)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

BURST_MIN = 5.0  # a client may always send a few requests at once
MAX_KEYS = 10_000  # bounds memory; only reached with very many distinct keys


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """Burst ``burst`` (default one second's worth, at least BURST_MIN), refilled at ``rate``
    per second."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, BURST_MIN)
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refilled(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.pop(key, None) or _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        self._buckets[key] = bucket  # most recently used last
        if len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)
        return bucket

    def _wait(self, bucket: _Bucket) -> float:
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self.rate

    def take(self, key: str) -> float:
        """Spend one token of ``key``'s bucket: 0.0 when allowed, else seconds to wait."""
        bucket = self._refilled(key)
        wait = self._wait(bucket)
        if wait == 0.0:
            bucket.tokens -= 1.0
        return wait

    def wait(self, key: str) -> float:
        """Seconds until ``key`` could spend a token (0.0: now), spending nothing."""
        if key not in self._buckets:
            return 0.0
        return self._wait(self._refilled(key))
