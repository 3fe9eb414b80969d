"""Exact accounting: what was sent, what was acknowledged, and what the API shows stored.

The ledger keeps, per device, the time of every reading-set that must be stored and of
those acknowledged; every reading-set of a device has the same metrics, so rows follow.
:meth:`Ledger.reconcile` compares that with the rows the export returns, and checks that
each value comes back as the type it was sent as (numbers, booleans and strings).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from simulator.api_client import StoredRow
from simulator.messages import Message

__all__ = ["Ledger", "Reconciliation"]


@dataclass
class _Device:
    metrics: int
    types: Mapping[str, str] = field(default_factory=dict)
    expected: set[int] = field(default_factory=set)
    acked: set[int] = field(default_factory=set)


def value_type(value: object) -> str:
    """Return the type of a value as the export gives it: number, boolean or string."""
    if isinstance(value, bool):
        return "boolean"
    return "string" if isinstance(value, str) else "number"


@dataclass(frozen=True)
class Reconciliation:
    """Readings (rows) the API shows against those sent and acknowledged.

    ``mistyped``: stored readings whose value is not of the type it was sent as.
    """

    stored: int
    duplicates: int
    lost: int
    unexpected: int
    missing_unacked: int
    mistyped: int = 0


@dataclass
class Ledger:
    """Counters and the identities of every reading sent in a run."""

    devices: dict[str, _Device] = field(default_factory=dict)
    messages_sent: int = 0
    messages_acked: int = 0
    messages_failed: int = 0
    duplicate_sends: int = 0
    retries: int = 0
    readings_sent: int = 0
    readings_acked: int = 0
    expected_rejects: Counter[str] = field(default_factory=Counter)
    rejects_answered: int = 0
    first_ts_ms: int | None = None
    last_ts_ms: int | None = None

    def add_device(
        self, device_id: str, metrics: int, types: Mapping[str, str] | None = None
    ) -> None:
        """Track a device whose reading-sets carry ``metrics`` values each.

        ``types``: the metrics whose values are not numbers, and their type.
        """
        self.devices[device_id] = _Device(metrics, types or {})

    def sent(self, device_id: str, message: Message, *, duplicate: bool = False) -> None:
        """Record that ``message`` left (first copy, or an injected duplicate)."""
        self.messages_sent += 1
        if duplicate:
            self.duplicate_sends += 1
            return
        device = self.devices[device_id]
        for reading in message.stored:
            if reading.ts_ms not in device.expected:
                device.expected.add(reading.ts_ms)
                self.readings_sent += device.metrics
            self._span(reading.ts_ms)

    def _span(self, ts_ms: int) -> None:
        if self.first_ts_ms is None or ts_ms < self.first_ts_ms:
            self.first_ts_ms = ts_ms
        if self.last_ts_ms is None or ts_ms > self.last_ts_ms:
            self.last_ts_ms = ts_ms

    def acked(self, device_id: str, message: Message, rejects: int | None = None) -> None:
        """Record the acknowledgement of one copy of ``message``.

        ``rejects``: the items the platform said it refused (an HTTP answer, an MQTT
        receipt); None where the acknowledgement says nothing (a PUBACK).
        """
        self.messages_acked += 1
        self.expected_rejects.update(message.rejects)
        if rejects is not None:
            self.rejects_answered += rejects
        device = self.devices[device_id]
        for reading in message.stored:
            if reading.ts_ms not in device.acked:
                device.acked.add(reading.ts_ms)
                self.readings_acked += device.metrics

    def reconcile(self, rows: Iterable[StoredRow]) -> Reconciliation:
        """Compare the rows the API returned with what was sent and acknowledged."""
        seen: Counter[tuple[str, str, int]] = Counter()
        per_set: Counter[tuple[str, int]] = Counter()
        unexpected = mistyped = 0
        for row in rows:
            device = self.devices.get(row.device_id)
            if device is None or row.ts_ms not in device.expected:
                unexpected += 1
                continue
            key = (row.device_id, row.metric, row.ts_ms)
            seen[key] += 1
            if seen[key] == 1:
                per_set[row.device_id, row.ts_ms] += 1
                if value_type(row.value) != device.types.get(row.metric, "number"):
                    mistyped += 1
        lost = missing_unacked = 0
        for device_id, device in self.devices.items():
            for ts_ms in device.expected:
                missing = max(0, device.metrics - per_set[device_id, ts_ms])
                if ts_ms in device.acked:
                    lost += missing
                else:
                    missing_unacked += missing
        return Reconciliation(
            stored=sum(per_set.values()),
            duplicates=sum(n - 1 for n in seen.values()),
            lost=lost,
            unexpected=unexpected,
            missing_unacked=missing_unacked,
            mistyped=mistyped,
        )
