"""Capped exponential backoff with jitter, and a token bucket for replay pacing."""

from __future__ import annotations

import random
import time
from typing import Callable

__all__ = ["Backoff", "TokenBucket"]


class Backoff:
    """Delays that double from ``initial_s`` up to ``max_s``, each drawn in [d/2, d].

    The jitter keeps a fleet that lost its broker at the same moment from reconnecting in
    lockstep; the lower bound of d/2 keeps a single device from retrying too eagerly.
    """

    def __init__(
        self,
        initial_s: float = 1.0,
        max_s: float = 60.0,
        multiplier: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if initial_s <= 0 or max_s < initial_s or multiplier < 1:
            raise ValueError("need 0 < initial_s <= max_s and multiplier >= 1")
        self.initial_s = initial_s
        self.max_s = max_s
        self.multiplier = multiplier
        self.attempts = 0
        self._rng = rng or random.Random()  # noqa: S311  (jitter, not cryptography)

    def next_delay(self) -> float:
        """Return the delay before the next attempt and count the attempt."""
        ceiling = min(self.max_s, self.initial_s * self.multiplier**self.attempts)
        self.attempts += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Start again from ``initial_s`` (after a successful connection)."""
        self.attempts = 0


class TokenBucket:
    """Allow ``rate_per_s`` units a second on average, with bursts up to ``burst``."""

    def __init__(
        self,
        rate_per_s: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate_per_s)
        self._stamp = now

    def available(self) -> float:
        """Units that may be spent now."""
        self._refill()
        return self._tokens

    def spend(self, units: float) -> None:
        """Spend ``units`` (the balance may go negative: the debt is paid by waiting)."""
        self._refill()
        self._tokens -= units

    def wait_s(self, units: float) -> float:
        """Seconds until ``units`` can be spent."""
        self._refill()
        missing = units - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate_per_s
