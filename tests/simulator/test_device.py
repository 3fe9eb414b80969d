from __future__ import annotations

import asyncio
import random

from simulator.accounting import Ledger
from simulator.delivery import Courier
from simulator.device import DeviceSettings, VirtualDevice
from simulator.errors import DriverError, RetryLaterError
from simulator.faults import FaultConfig
from simulator.fleet import DeviceRecord
from simulator.messages import Message


class RecordingCourier(Courier):
    """Acknowledges every message at once, after ``failures`` failed attempts."""

    def __init__(self, ledger: Ledger, failures: list[Exception] | None = None) -> None:
        super().__init__(ledger, None, None)
        self.messages: list[Message] = []
        self.failures = failures or []

    async def _send_once(
        self,
        index: int,  # noqa: ARG002  (the real one picks a connection by it)
        device: DeviceRecord,  # noqa: ARG002
        message: Message,
    ) -> int | None:
        if self.failures:
            raise self.failures.pop(0)
        self.messages.append(message)
        return None


def _run(
    faults: FaultConfig,
    *,
    seconds: float = 1.0,
    interval_s: float = 0.01,
    per_message: int = 1,
    protocol: str = "mqtt",
    seed: int = 1,
) -> tuple[RecordingCourier, Ledger, VirtualDevice]:
    ledger = Ledger()
    ledger.add_device("dev-1", 4)
    courier = RecordingCourier(ledger)
    record = DeviceRecord("dev-1", "environmental", protocol, "token")  # type: ignore[arg-type]
    settings = DeviceSettings(interval_s, per_message, 0.1, 0.0, 1, faults)
    device = VirtualDevice(0, record, settings, courier, random.Random(seed))

    async def go() -> None:
        await device.run(asyncio.get_running_loop().time() + seconds)

    asyncio.run(go())
    return courier, ledger, device


def _times(courier: RecordingCourier) -> list[int]:
    return [r.ts_ms for m in courier.messages for r in m.stored]


def test_a_well_behaved_device_sends_rising_times_once_each() -> None:
    courier, ledger, device = _run(FaultConfig())
    times = _times(courier)
    assert 70 <= len(times) <= 130
    assert times == sorted(set(times))
    assert ledger.readings_sent == ledger.readings_acked == 4 * len(times)
    assert device.record.seq == len(times)
    assert device.record.last_ts_ms == times[-1]


def test_per_message_batches_reading_sets() -> None:
    courier, _, _ = _run(FaultConfig(), per_message=5)
    assert all(len(m.stored) == 5 for m in courier.messages[:-1])


def test_late_readings_arrive_after_newer_ones() -> None:
    courier, ledger, _ = _run(FaultConfig(late_share=0.3, late_max_s=0.2), seconds=1.5)
    times = _times(courier)
    assert times != sorted(times)
    assert len(times) == len(set(times))
    assert ledger.readings_acked == ledger.readings_sent


def test_duplicates_resend_the_same_message() -> None:
    courier, ledger, _ = _run(FaultConfig(duplicate_share=0.3))
    assert ledger.duplicate_sends > 10
    payloads = [m.payload for m in courier.messages]
    assert len(payloads) - len(set(payloads)) == ledger.duplicate_sends
    assert ledger.readings_sent == 4 * len(set(_times(courier)))


def test_an_offline_device_returns_with_a_backlog() -> None:
    courier, _, _ = _run(FaultConfig(offline_share=1.0, offline_s=0.2), seconds=1.5)
    sizes = [len(m.stored) for m in courier.messages]
    assert max(sizes) >= 5
    assert _times(courier) == sorted(_times(courier))


def test_bursts_send_extra_reading_sets() -> None:
    quiet, _, _ = _run(FaultConfig(), seed=3)
    bursty, _, _ = _run(FaultConfig(burst_rate=20.0, burst_size=10), seed=3)
    assert len(_times(bursty)) > len(_times(quiet)) + 50


def test_malformed_share_adds_expected_rejects() -> None:
    _, ledger, _ = _run(FaultConfig(malformed_share=0.2), protocol="http")
    assert sum(ledger.expected_rejects.values()) > 5
    assert set(ledger.expected_rejects) <= {"schema", "invalid_name", "malformed_json", "too_long"}


def test_a_device_far_ahead_sends_only_expected_rejects() -> None:
    faults = FaultConfig(skew_share=1.0, skew_max_s=1000.0, late_share=0.5)
    for seed in range(20):
        courier, ledger, device = _run(faults, seconds=0.3, seed=seed)
        if device.future:
            break
    assert device.future
    assert ledger.readings_sent == 0
    assert ledger.expected_rejects["future_timestamp"] == len(courier.messages)


def test_failed_sends_are_retried_until_acknowledged() -> None:
    ledger = Ledger()
    ledger.add_device("dev-1", 4)
    courier = RecordingCourier(ledger, [DriverError("gone"), RetryLaterError("busy", 0.01)])
    record = DeviceRecord("dev-1", "environmental", "http", "token")
    settings = DeviceSettings(0.01, 1, 0.0, 0.0, 1, FaultConfig())
    device = VirtualDevice(0, record, settings, courier, random.Random(1))

    async def go() -> None:
        await device.run(asyncio.get_running_loop().time() + 0.05)

    asyncio.run(go())
    assert ledger.retries == 2
    assert ledger.messages_acked == ledger.messages_sent
    assert courier.last_error == "gone"
