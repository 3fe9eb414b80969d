"""What a batch is made of: reading-sets, device bookkeeping, dead letters, the result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = [
    "AttributeReport",
    "DeadLetter",
    "DeviceUpdate",
    "ReadingSet",
    "Source",
    "TypedSet",
    "WriteResult",
]

#: (device_key, ts, {metric name: value}): one sample instant of one device, its numbers.
ReadingSet = tuple[int, datetime, Mapping[str, float]]
#: The booleans and strings of a sample instant, which readings_typed holds.
TypedSet = tuple[int, datetime, Mapping[str, bool | str]]

#: Which intake a message came through.
Source = Literal["mqtt", "http"]


@dataclass(frozen=True, slots=True)
class DeviceUpdate:
    """Per-batch bookkeeping of one device: when it was heard, its seq range, gaps within."""

    device_key: int
    last_seen: datetime
    first_seq: int | None = None
    last_seq: int | None = None
    seq_gaps: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message or item that was rejected, kept with its reason and raw payload."""

    source: Source
    reason: str
    detail: str
    payload: bytes
    device_id: str | None = None
    item_index: int | None = None
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AttributeReport:
    """What a device reported about itself (a JSON object, encoded), and when it arrived."""

    device_key: int
    attributes: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Rows stored by a batch and rows that were already there.

    ``accepted_per_set`` gives the new rows of each reading-set, in order, when the batch
    held duplicates; it is None when every row was new. ``typed_per_set`` does the same
    for the typed sets.
    """

    accepted: int
    duplicates: int
    accepted_per_set: list[int] | None = None
    typed_per_set: list[int] | None = None
