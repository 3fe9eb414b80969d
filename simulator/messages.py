"""Reading-sets and the messages that carry them, in wire format v1 or SenML.

Wire format v1 is written with the device agent's encoder (:mod:`device_client.wire`).
Times have millisecond resolution: a SenML time is a float of epoch seconds, and a float
holds milliseconds of this century exactly enough that the server rounds them back to the
same instant, so a reading keeps one identity (device, metric, ts) on every path.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from device_client.wire import encode_batch, encode_reading, format_ts
from simulator.faults import Encoding, Malformed
from simulator.profiles import Value

__all__ = ["Message", "ReadingSet", "build_message", "ts_from_ms", "ts_to_ms"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ts_from_ms(ts_ms: int) -> datetime:
    """Return the aware UTC datetime of epoch milliseconds, exactly."""
    return _EPOCH + timedelta(milliseconds=ts_ms)


def ts_to_ms(moment: datetime) -> int:
    """Return epoch milliseconds of an aware datetime (truncating below a millisecond)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class ReadingSet:
    """Values of one device at one instant (as its own clock tells it)."""

    seq: int
    ts_ms: int
    values: Mapping[str, Value]


@dataclass(frozen=True)
class Message:
    """One MQTT message or HTTP request body and what the server must make of it.

    ``stored`` are the reading-sets the server must store; ``rejects`` counts the dead
    letters it must write, by reason; ``whole_reject`` says HTTP answers 400.
    """

    payload: bytes
    encoding: Encoding
    stored: tuple[ReadingSet, ...] = ()
    rejects: Counter[str] = field(default_factory=Counter)
    whole_reject: bool = False

    @property
    def content_type(self) -> str:
        """HTTP Content-Type of the payload."""
        return "application/senml+json" if self.encoding == "senml" else "application/json"


def _json_items(readings: Iterable[ReadingSet]) -> list[str]:
    return [encode_reading(format_ts(ts_from_ms(r.ts_ms)), r.seq, r.values) for r in readings]


def _senml_records(device_id: str, readings: Sequence[ReadingSet]) -> list[str]:
    if not readings:
        return []
    base_ms = readings[0].ts_ms
    records: list[str] = []
    for i, reading in enumerate(readings):
        offset_s = (reading.ts_ms - base_ms) / 1000
        for j, (name, value) in enumerate(reading.values.items()):
            record: dict[str, object] = {"n": name, _senml_field(value): value}
            if offset_s:
                record["t"] = offset_s
            if i == 0 and j == 0:
                record = {"bn": f"{device_id}/", "bt": base_ms / 1000, **record}
            records.append(json.dumps(record, separators=(",", ":")))
    return records


def _senml_field(value: Value) -> str:
    """Return the SenML field of a value: ``vb`` for a boolean, ``vs`` for a string, else ``v``."""
    if isinstance(value, bool):
        return "vb"
    return "vs" if isinstance(value, str) else "v"


def build_message(
    device_id: str,
    encoding: Encoding,
    readings: Sequence[ReadingSet],
    *,
    rejected: Sequence[ReadingSet] = (),
    bad: Malformed | None = None,
) -> Message:
    """Encode ``readings`` (to be stored) and ``rejected`` (too far ahead) in one message.

    ``bad`` adds a malformed item, or, when it is a whole malformed message, becomes the
    message on its own (``readings`` must then be empty).
    """
    if bad is not None and bad.whole:
        if readings or rejected:
            raise ValueError("a malformed message carries no readings")
        return Message(bad.text.encode(), encoding, (), Counter({bad.reason: 1}), whole_reject=True)
    rejects: Counter[str] = Counter()
    if encoding == "senml":
        ordered = sorted([*readings, *rejected], key=lambda r: r.ts_ms)
        items = _senml_records(device_id, ordered)
        rejects["future_timestamp"] = sum(len(r.values) for r in rejected)
    else:
        items = _json_items(readings) + _json_items(rejected)
        rejects["future_timestamp"] = len(rejected)
    if bad is not None:
        items.append(bad.text)
        rejects[bad.reason] += 1
    return Message(encode_batch(items), encoding, tuple(readings), +rejects)
