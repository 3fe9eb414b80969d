"""The sampling loop: reads sensors on their intervals and stores batches in the spool.

A plain loop over monotonic deadlines rather than a scheduler library: it needs no thread
per job, costs one wake-up per sample instant, and keeps the agent's memory small (the
target is 30 MB RSS on a Raspberry Pi). Sensors due at the same instant are read together
and their values form one reading-set with one timestamp, taken when sampling starts (on a
gateway, one reading-set per device read).

Reading-sets collect in memory and go to the spool in one commit when ``max_readings`` are
waiting or the oldest has waited ``interval_s``: a ``kill -9`` loses at most that much.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable

from device_client.config import BatchConfig
from device_client.errors import SensorError, SpoolError
from device_client.sensors import Sensor
from device_client.spool import Spool
from device_client.wire import Value, encode_reading, utc_now_ts, wire_values

__all__ = ["Sampler", "SamplerStats"]

log = logging.getLogger(__name__)

# Sensors due within this window are read together, in one reading-set.
_GROUP_S = 0.05
# While the spool refuses writes (disk full, I/O error) the buffer may grow this many
# batches before its oldest entries are dropped.
_MAX_BUFFERED_BATCHES = 10


@dataclass
class SamplerStats:
    """Counters since start, for the periodic progress log."""

    samples: int = 0
    spooled: int = 0
    dropped: int = 0
    paused: int = 0
    sensor_errors: int = 0
    commits: int = 0


class Sampler:
    """Runs in the calling thread until ``stop`` is set, then stores what it holds."""

    def __init__(
        self,
        sensors: Sequence[Sensor],
        spool: Spool,
        batch: BatchConfig,
        *,
        full_policy: str,
        stop: threading.Event,
        wake: threading.Event | None = None,
        progress: Callable[[], None] | None = None,
        progress_interval_s: float = 60.0,
    ) -> None:
        self.sensors = list(sensors)
        self.spool = spool
        self.batch = batch
        self.pause_when_full = full_policy == "pause"
        self.stop = stop
        self.wake = wake
        self.progress = progress
        self.progress_interval_s = progress_interval_s
        self.stats = SamplerStats()
        self.paused = False
        self._buffer: list[tuple[str, Mapping[str, Value], str | None]] = []
        self._buffer_bytes = 0
        self._first_buffered_at = 0.0
        self._last_size = 128
        self._failing: set[str] = set()

    def run(self) -> None:
        """Sample until stopped; the last partial batch is committed on the way out."""
        start = time.monotonic()
        due = [start] * len(self.sensors)
        next_progress = start + self.progress_interval_s
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                ready = [i for i, when in enumerate(due) if when <= now + _GROUP_S]
                if ready:
                    self._sample([self.sensors[i] for i in ready])
                    for i in ready:
                        interval = self.sensors[i].spec.interval_s
                        due[i] += interval
                        if due[i] <= now:  # fell behind (slow sensor, suspended host): skip
                            due[i] = now + interval
                if self._buffer and (
                    len(self._buffer) >= self.batch.max_readings
                    or now - self._first_buffered_at >= self.batch.interval_s
                ):
                    self.commit()
                if self.progress is not None and now >= next_progress:
                    next_progress = now + self.progress_interval_s
                    self.progress()
                wake_at = min(due)
                if self._buffer:
                    wake_at = min(wake_at, self._first_buffered_at + self.batch.interval_s)
                self.stop.wait(max(0.0, wake_at - time.monotonic()))
        finally:
            if self._buffer:
                self.commit()

    def _sample(self, sensors: Sequence[Sensor]) -> None:
        if self.pause_when_full and not self._has_room():
            if not self.paused:
                self.paused = True
                log.warning("spool full: sampling paused until the backlog drains")
            self.stats.paused += 1
            self.spool.count("paused_samples_total")
            return
        if self.paused:
            self.paused = False
            log.warning("spool has room again: sampling resumed")
        ts = utc_now_ts()
        by_device: dict[str | None, dict[str, Value]] = {}
        for sensor in sensors:
            for device, values in self._read(sensor).items():
                by_device.setdefault(device, {}).update(values)
        for device, values in by_device.items():
            kept = wire_values(values)
            if not kept:
                continue
            self.stats.samples += 1
            if not self._buffer:
                self._first_buffered_at = time.monotonic()
            self._last_size = len(encode_reading(ts, self.spool.next_seq, kept, device))
            self._buffer.append((ts, kept, device))
            self._buffer_bytes += self._last_size

    def _has_room(self) -> bool:
        return self.spool.has_room(len(self._buffer) + 1, self._buffer_bytes + self._last_size)

    def _read(self, sensor: Sensor) -> Mapping[str | None, Mapping[str, Value]]:
        try:
            values = sensor.read_devices()
        except SensorError as exc:
            self._sensor_failed(sensor, str(exc))
            return {}
        except Exception as exc:  # noqa: BLE001  (a plugin's bug must not stop the others)
            self._sensor_failed(sensor, f"{type(exc).__name__}: {exc}")
            return {}
        if sensor.label in self._failing:
            self._failing.discard(sensor.label)
            log.info("sensor %s recovered", sensor.label)
        return values

    def _sensor_failed(self, sensor: Sensor, why: str) -> None:
        self.stats.sensor_errors += 1
        # Logged once per failure streak, so a missing sensor does not flood the journal.
        if sensor.label not in self._failing:
            self._failing.add(sensor.label)
            log.warning("sensor %s failed: %s (skipping until it recovers)", sensor.label, why)
        else:
            log.debug("sensor %s failed again: %s", sensor.label, why)

    def _store_failed(self, exc: SpoolError) -> None:
        """Keep the batch for the next attempt, within a bound (disk full, I/O error)."""
        log.error("cannot store %d reading-sets: %s", len(self._buffer), exc)
        limit = self.batch.max_readings * _MAX_BUFFERED_BATCHES
        if len(self._buffer) > limit:
            lost = len(self._buffer) - limit
            del self._buffer[:lost]
            self.stats.dropped += lost
            log.error("dropped the %d oldest unstored reading-sets", lost)
        self._first_buffered_at = time.monotonic()

    def commit(self) -> None:
        """Store the buffered reading-sets in one spool commit and wake the forwarder."""
        try:
            dropped = self.spool.append(self._buffer)
        except SpoolError as exc:
            self._store_failed(exc)
            return
        self.stats.spooled += len(self._buffer) - dropped
        self.stats.dropped += dropped
        self.stats.commits += 1
        self._buffer.clear()
        self._buffer_bytes = 0
        if self.wake is not None:
            self.wake.set()
