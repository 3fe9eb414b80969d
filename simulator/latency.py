"""End-to-end latency, sampled: from a reading's time until the query API shows it.

Devices offer readings they have just had acknowledged; a few workers poll
``GET /v1/devices/{id}/readings`` for each until it appears. The offer queue is small and
offers beyond it are dropped, so sampling never slows the fleet or floods the API.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from types import TracebackType
from typing import Self

from simulator.api_client import QueryApi
from simulator.errors import ApiError

__all__ = ["LatencyProbe", "percentile"]

log = logging.getLogger(__name__)


def percentile(values: list[float], share: float) -> float | None:
    """Return the ``share`` (0..1) percentile by nearest rank, or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1))
    return ordered[rank]


class LatencyProbe:
    """Measures how long readings take to become visible in the API."""

    def __init__(
        self,
        api: QueryApi,
        *,
        workers: int = 2,
        poll_s: float = 0.05,
        give_up_s: float = 60.0,
        max_samples: int = 5_000,
    ) -> None:
        self.api = api
        self.poll_s = poll_s
        self.give_up_s = give_up_s
        self.max_samples = max_samples
        self.samples_s: list[float] = []
        self.timeouts = 0
        self._offers: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue(maxsize=workers)
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []

    def offer(self, device_id: str, metric: str, ts_ms: int) -> None:
        """Offer a just-acknowledged reading for measuring (dropped when busy)."""
        if self._tasks and len(self.samples_s) < self.max_samples and not self._offers.full():
            self._offers.put_nowait((device_id, metric, ts_ms))

    async def __aenter__(self) -> Self:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"latency-probe-{i}")
            for i in range(self._workers)
        ]
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            device_id, metric, ts_ms = await self._offers.get()
            deadline = time.monotonic() + self.give_up_s
            try:
                while not await self.api.visible(device_id, metric, ts_ms):
                    if time.monotonic() > deadline:
                        self.timeouts += 1
                        break
                    await asyncio.sleep(self.poll_s)
                else:
                    self.samples_s.append(time.time() - ts_ms / 1000)
            except ApiError as exc:
                log.warning("latency probe failed: %s", exc)
