"""Capped, jittered, doubling delays between attempts, reset after a success.

One policy for every reconnect and retry loop of the services: the ingest's MQTT link,
the simulator's MQTT links, the writer's retry of transient database errors and the
supervisor's restart of a worker that keeps dying. Jitter spreads out clients that lost
the same server at the same moment, so they do not all come back in one instant.
"""

from __future__ import annotations

import asyncio
import random

__all__ = ["Backoff"]


class Backoff:
    """Delays of ``first_s``, doubling up to ``max_s``, each drawn from its upper half."""

    __slots__ = ("_next_s", "first_s", "max_s")

    def __init__(self, first_s: float, max_s: float) -> None:
        if not 0 < first_s <= max_s:
            raise ValueError("need 0 < first_s <= max_s")
        self.first_s = first_s
        self.max_s = max_s
        self._next_s = first_s

    def next_delay(self) -> float:
        """Return the delay before the next attempt and double the one after it."""
        delay = self._next_s * random.uniform(0.5, 1.0)  # noqa: S311  (jitter, not crypto)
        self._next_s = min(self._next_s * 2, self.max_s)
        return delay

    def peek_s(self) -> float:
        """Return the longest the next delay can be (to decide whether to try again at all)."""
        return self._next_s

    def reset(self) -> None:
        """Start again from ``first_s`` (after a success)."""
        self._next_s = self.first_s

    async def sleep(self) -> float:
        """Sleep for :meth:`next_delay` and return how long that was."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay
