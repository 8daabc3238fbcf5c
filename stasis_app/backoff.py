"""Capped exponential backoff with jitter, for every reconnect loop."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float = 0.2, maximum: float = 30.0, factor: float = 2.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._next = initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * self.factor, self.maximum)
        # Full jitter on the upper half so many instances do not reconnect in lockstep.
        return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - not cryptographic

    def reset(self) -> None:
        self._next = self.initial
