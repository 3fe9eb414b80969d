"""Per-key token buckets for rate limits."""

from __future__ import annotations

import time

__all__ = ["TokenBuckets"]


class TokenBuckets:
    """Token buckets per key: ``rate`` requests a second, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[object, tuple[float, float]] = {}

    def take(self, key: object) -> float:
        """Spend a token for ``key``; return 0 if allowed, else seconds until one is free."""
        now = time.monotonic()
        tokens, stamp = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - stamp) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._buckets.clear()  # bounded; forgetting buckets only forgives some bursts
        self._buckets[key] = (tokens - 1, now)
        return 0.0
