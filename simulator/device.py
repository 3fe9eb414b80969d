"""A virtual device: samples its profile on a jittered schedule and sends, faults included.

Each device is one asyncio task. Its schedule is fixed in monotonic time (a random phase,
then its interval with per-tick jitter); a reading-set's time is the wall-clock time of
its tick plus the device's clock skew, so a slow send delays delivery, not the data.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from simulator.delivery import Courier
from simulator.faults import FaultConfig, draw_skew_s, malformed
from simulator.fleet import DeviceRecord
from simulator.latency import LatencyProbe
from simulator.messages import ReadingSet, build_message
from simulator.profiles import profile_for

__all__ = ["DeviceSettings", "VirtualDevice"]

_BACKLOG_BATCH = 100


@dataclass(frozen=True)
class DeviceSettings:
    """What every device of a run shares."""

    interval_s: float
    per_message: int
    jitter: float
    anomaly_rate: float
    fleet_size: int
    faults: FaultConfig


class VirtualDevice:
    """One simulated device of the fleet."""

    def __init__(
        self,
        index: int,
        record: DeviceRecord,
        settings: DeviceSettings,
        courier: Courier,
        rng: random.Random,
        *,
        probe: LatencyProbe | None = None,
    ) -> None:
        self.index = index
        self.record = record
        self.settings = settings
        self.courier = courier
        self.probe = probe
        self.rng = rng
        faults = settings.faults
        self.signal = profile_for(record.profile).signal(rng, settings.anomaly_rate)
        self.skew_ms = round(draw_skew_s(rng, faults) * 1000)
        # Far-ahead devices are never held back: their readings must stay too far ahead.
        self.future = self.skew_ms > faults.max_future_skew_s * 1000
        self.flaky = not self.future and rng.random() < faults.offline_share
        self.pending: list[ReadingSet] = []
        self.held: list[tuple[float, ReadingSet]] = []
        self._mono0 = time.monotonic()
        self._wall0_ms = time.time_ns() // 1_000_000

    def _wall_ms(self, mono: float) -> int:
        return self._wall0_ms + round((mono - self._mono0) * 1000)

    def _sample(self, wall_ms: int) -> ReadingSet:
        ts_ms = max(wall_ms + self.skew_ms, self.record.last_ts_ms + 1)
        self.record.last_ts_ms = ts_ms
        self.record.seq += 1
        return ReadingSet(self.record.seq, ts_ms, self.signal.sample(ts_ms / 1000))

    def _offline_spell(self, now: float) -> tuple[float, float]:
        """Return the next (start, end) of an offline spell after ``now``."""
        mean = self.settings.faults.offline_s
        start = now + self.rng.uniform(1.0, 3.0) * mean
        return start, start + self.rng.uniform(0.5, 1.5) * mean

    async def run(self, until: float) -> None:
        """Sample and send until monotonic time ``until``, then send everything left."""
        loop = asyncio.get_running_loop()
        settings, faults, rng = self.settings, self.settings.faults, self.rng
        burst_p = faults.burst_rate * settings.interval_s / max(1, settings.fleet_size)
        tick = loop.time() + rng.uniform(0.0, settings.interval_s)
        spell = self._offline_spell(tick) if self.flaky else (until, until)
        while tick < until:
            await asyncio.sleep(max(0.0, tick - loop.time()))
            wall_ms = self._wall_ms(tick)
            if rng.random() < burst_p:
                await self._burst(wall_ms)
            reading = self._sample(wall_ms)
            if not self.future and rng.random() < faults.late_share:
                self.held.append((tick + rng.uniform(1.0, max(1.0, faults.late_max_s)), reading))
            else:
                self.pending.append(reading)
            due = [r for t, r in self.held if t <= tick]
            if due:
                self.held = [(t, r) for t, r in self.held if t > tick]
                self.pending += due
            if tick >= spell[1]:
                spell = self._offline_spell(tick)
            if not spell[0] <= tick < spell[1]:
                await self._flush(settings.per_message, fresh=True)
            tick += settings.interval_s * rng.uniform(1 - settings.jitter, 1 + settings.jitter)
        self.pending += [r for _, r in self.held]
        self.held.clear()
        await self._flush(1, fresh=False)

    async def _burst(self, wall_ms: int) -> None:
        for _ in range(self.settings.faults.burst_size):
            await self._send([self._sample(wall_ms)], fresh=False)

    async def _flush(self, at_least: int, *, fresh: bool) -> None:
        while len(self.pending) >= at_least and self.pending:
            size = max(self.settings.per_message, _BACKLOG_BATCH)
            chunk, self.pending = self.pending[:size], self.pending[size:]
            await self._send(chunk, fresh=fresh and len(chunk) <= self.settings.per_message)

    async def _send(self, readings: list[ReadingSet], *, fresh: bool) -> None:
        faults, rng, record = self.settings.faults, self.rng, self.record
        bad = None
        if rng.random() < faults.malformed_share:
            bad = malformed(rng, record.encoding, readings[-1].ts_ms / 1000)
            if bad.whole:
                whole = build_message(record.device_id, record.encoding, [], bad=bad)
                await self.courier.deliver(self.index, record, whole)
                bad = None
        if self.future:
            message = build_message(record.device_id, record.encoding, [], rejected=readings)
        else:
            message = build_message(record.device_id, record.encoding, readings, bad=bad)
        if not await self.courier.deliver(self.index, record, message):
            return
        if fresh and self.probe is not None and self.skew_ms == 0:
            latest = readings[-1]
            self.probe.offer(record.device_id, next(iter(latest.values)), latest.ts_ms)
        if not message.rejects and rng.random() < faults.duplicate_share:
            await self.courier.deliver(self.index, record, message, duplicate=True)
