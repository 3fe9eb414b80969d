"""Wire format v1: a reading-set object, or a JSON array of them.

Unknown object fields are accepted and ignored (forward compatibility); a known field is
either absent or of its type (``null`` is a schema error). ``values`` maps metric names to
numbers, booleans or strings; ``units`` (optional) maps some of those metrics to their
units. A gateway's item may name a child device in ``device_id``.

A message takes one of three paths, each stricter than the one before only where it must:

1. :func:`_parse_v1_valid`, the fast path: msgspec decodes the common shape into typed
   structs in compiled code, and the few checks left are made by hand. Almost every
   message is valid and takes only this path; anything unusual returns None.
2. The pydantic path: one ``validate_json`` of the whole message against :class:`_V1Item`,
   which accepts what the fast path passed on (an integer too large for an exact float, an
   unusual time) when it is valid after all.
3. :func:`_parse_v1_slowly`, the per-item path: only when the message is invalid, each
   item is validated on its own to find which items are bad and why, so that one bad item
   never rejects its neighbours.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Final, Required

import msgspec
from msgspec import UNSET, UnsetType
from pydantic import Field, Strict, StringConstraints, TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic needs it for TypedDict before 3.12

from ingest.wire.base import (
    DEVICE_ID_PATTERN,
    EXACT_INT,
    JSON_VALUE,
    MAX_SEQ,
    MAX_TEXT_BYTES,
    METRIC_NAME_PATTERN,
    RFC3339,
    Clock,
    Finite,
    Item,
    Limits,
    Parsed,
    String,
    Text,
    Unit,
    collect,
    error_problem,
    is_device_id,
    is_metric_name,
    is_unit,
    malformed,
    quote,
    too_large,
)
from ingest.wire.reasons import Problem, Reason, Reject, first_problem

__all__ = ["decode_valid_sets", "parse_v1"]

_JSON_WHITESPACE: Final = b" \t\r\n"


_MetricName = Annotated[str, StringConstraints(strict=True, pattern=METRIC_NAME_PATTERN)]
_Value = Finite | Annotated[bool, Strict()] | Text
# A strict string with a pattern, parsed by datetime.fromisoformat later: pydantic's own
# datetime would also take "1700000000" and read large numbers as milliseconds.
_Rfc3339 = Annotated[str, StringConstraints(strict=True, pattern=RFC3339)]


class _V1Item(TypedDict, total=False):
    values: Required[Annotated[dict[_MetricName, _Value], Field(min_length=1)]]
    units: dict[_MetricName, Unit]
    ts: Finite | _Rfc3339
    seq: Annotated[int, Strict(), Field(ge=0, le=MAX_SEQ)]
    device_id: String


_V1_ITEM: Final = TypeAdapter(_V1Item)
_V1_BATCH: Final = TypeAdapter(list[_V1Item])


def parse_v1(
    body: bytes, device_id: str, clock: Clock, limits: Limits, *, gateway: bool = False
) -> Parsed:
    """Validate a wire format v1 message of ``device_id`` (the three paths: see above).

    A ``gateway``'s items may name other devices in ``device_id`` (``Item.device_id``);
    for any other device that is a ``device_mismatch``.
    """
    fast = _parse_v1_valid(body, device_id, clock, limits, gateway=gateway)
    if fast is not None:
        return fast
    return _parse_v1_checked(body, device_id, clock, limits, gateway=gateway)


def _parse_v1_checked(
    body: bytes, device_id: str, clock: Clock, limits: Limits, *, gateway: bool = False
) -> Parsed:
    """Validate with pydantic, then item by item where the message is invalid."""
    batch = body.lstrip(_JSON_WHITESPACE)[:1] == b"["
    try:
        entries = _V1_BATCH.validate_json(body) if batch else [_V1_ITEM.validate_json(body)]
    except ValidationError:
        return _parse_v1_slowly(body, device_id, clock, limits, gateway=gateway)
    return too_large(len(entries), limits) or collect(
        [
            _v1_item(index, entry, device_id, clock, gateway=gateway)
            for index, entry in enumerate(entries)
        ],
        len(entries),
    )


_METRIC_NAMES_MAX: Final = 10_000
_metric_names_seen: set[str] = set()  # names that matched the pattern: skip the regex


# RFC 3339 as the pydantic path checks it; ``\Z``: Python's "$" passes a trailing newline.
# Matched here, not by msgspec's ``Meta(pattern=...)``, which took twice as long a string.
_is_rfc3339: Final = re.compile(RFC3339[:-1] + r"\Z").match


class _ValidSet(msgspec.Struct, forbid_unknown_fields=True):
    """The shape of a valid reading-set, for msgspec's compiled decoder (the fast path).

    Stricter than :class:`_V1Item` only where this path must fall back: no unknown fields
    (msgspec skips them without checking their UTF-8). ``null`` for a known field is
    refused, as in pydantic. A time string is matched against the RFC 3339 pattern and read
    by :meth:`Clock.from_rfc3339`, as on the other paths.
    """

    values: dict[str, float | int | bool | str]
    units: dict[str, str] | UnsetType = UNSET
    ts: str | float | int | UnsetType = UNSET
    seq: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)] | UnsetType = UNSET
    device_id: str | UnsetType = UNSET


_valid_sets: Final = msgspec.json.Decoder(list[_ValidSet] | _ValidSet)
#: The fast path's compiled decoding alone (raises msgspec.DecodeError): for the cost model.
decode_valid_sets: Final = _valid_sets.decode


def _parse_v1_valid(
    body: bytes, device_id: str, clock: Clock, limits: Limits, *, gateway: bool = False
) -> Parsed | None:
    """Parse a message whose every item is valid, without pydantic's validation; else None.

    Almost every message is valid, and msgspec decodes the common shape into typed structs
    in compiled code; what is left (names, numbers an exact float holds, string sizes,
    units, the range of times) is checked here. Anything unusual (an invalid item, an
    integer too large for an exact float) returns None and takes the full path, so every
    reject still comes from one place.
    """
    try:
        document = decode_valid_sets(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    entries = document if isinstance(document, list) else [document]
    if len(entries) > limits.max_items:
        return None
    now = clock.now
    items = []
    for index, entry in enumerate(entries):
        values = _valid_numbers(entry.values)
        if values is None:
            return None
        seq = None if entry.seq is UNSET else entry.seq
        raw = entry.ts
        if raw is UNSET:
            ts: datetime | Problem | None = now
        elif type(raw) is str:
            ts = clock.from_rfc3339(raw) if _is_rfc3339(raw) else None
        elif type(raw) is int and not -EXACT_INT <= raw <= EXACT_INT:
            ts = None
        else:
            ts = clock.from_epoch(float(raw), "ts")
        if type(ts) is not datetime:
            return None
        if values is _NOT_ONLY_NUMBERS or entry.device_id is not UNSET or entry.units is not UNSET:
            # Booleans, strings, units or a device named: checked apart, so that the
            # common item (numbers of the sender) costs no more than before they existed.
            item = _unusual_item(Item(index, ts, seq, {}, raw is UNSET), entry, device_id, gateway)
            if item is None:
                return None
            items.append(item)
        else:
            items.append(Item(index, ts, seq, values, raw is UNSET))
    return Parsed(items, [], len(entries))


#: What :func:`_valid_numbers` returns for values that are not all numbers.
_NOT_ONLY_NUMBERS: Final[dict[str, float]] = {}


def _valid_numbers(values: dict[str, float | int | bool | str]) -> dict[str, float] | None:
    """Return ``values`` as floats when every name is valid and every value a number.

    None when a name or number is invalid (the full path says why); ``_NOT_ONLY_NUMBERS``
    when some values are booleans or strings (:func:`_unusual_item` takes those).
    """
    if not values:
        return None
    exact = only_numbers = True
    for name, value in values.items():
        if name not in _metric_names_seen:
            if not is_metric_name(name):
                return None
            if len(_metric_names_seen) < _METRIC_NAMES_MAX:
                _metric_names_seen.add(name)
        if type(value) is int:
            if not -EXACT_INT <= value <= EXACT_INT:
                return None
            exact = False
        elif type(value) is not float:
            only_numbers = False
    if not only_numbers:
        return _NOT_ONLY_NUMBERS
    return values if exact else {n: float(v) for n, v in values.items()}  # type: ignore[return-value]  # every value is a number here


def _unusual_item(item: Item, entry: _ValidSet, device_id: str, gateway: bool) -> Item | None:
    """Complete ``item`` (index, time, seq) with values, units and device; None if invalid."""
    claimed = entry.device_id
    child = None if claimed is UNSET or claimed == device_id else claimed
    if child is not None and not (gateway and is_device_id(child)):
        return None
    values = entry.values  # names and numbers checked by _valid_numbers
    for value in values.values():
        # A string of up to a quarter of the limit in characters fits in bytes too.
        if isinstance(value, str) and (
            "\x00" in value
            or (len(value) > MAX_TEXT_BYTES // 4 and len(value.encode()) > MAX_TEXT_BYTES)
        ):
            return None
    units = None if entry.units is UNSET else entry.units or None
    if units is not None and not _valid_units(units, values):
        return None
    item.values, item.typed = _split(values)
    item.units, item.device_id = units, child
    return item


def _split(
    values: dict[str, float | int | bool | str],
) -> tuple[dict[str, float], dict[str, bool | str] | None]:
    """Numbers (as floats) apart from booleans and strings."""
    numbers: dict[str, float] = {}
    typed: dict[str, bool | str] = {}
    for name, value in values.items():
        if isinstance(value, bool | str):
            typed[name] = value
        else:
            numbers[name] = float(value)
    return numbers, typed or None


def _valid_units(units: dict[str, str], values: dict[str, float | int | bool | str]) -> bool:
    """Whether every unit is well formed and belongs to a metric of ``values``."""
    return all(name in values and is_unit(unit) for name, unit in units.items())


def _parse_v1_slowly(
    body: bytes, device_id: str, clock: Clock, limits: Limits, *, gateway: bool = False
) -> Parsed:
    """Validate item by item to find out which items are bad and why."""
    try:
        document = JSON_VALUE.validate_json(body)
    except ValidationError as exc:
        return malformed(exc)
    if isinstance(document, list):
        raw_items: list[object] = document
    elif isinstance(document, dict):
        raw_items = [document]
    else:
        detail = "the message must be a JSON object or an array of objects"
        return Parsed([], [Reject(-1, Reason.SCHEMA, detail)], 0)
    oversized = too_large(len(raw_items), limits)
    if oversized is not None:
        return oversized
    outcomes: list[Item | Reject | None] = []
    for index, raw in enumerate(raw_items):
        try:
            entry = _V1_ITEM.validate_python(raw)
        except ValidationError as exc:
            outcomes.append(_v1_invalid(index, raw, exc, device_id, gateway=gateway))
        else:
            outcomes.append(_v1_item(index, entry, device_id, clock, gateway=gateway))
    return collect(outcomes, len(raw_items))


def _device_mismatch(index: int, claimed: str, device_id: str, *, gateway: bool) -> Reject | None:
    """Reject an item that names another device, unless a gateway names a valid one."""
    if not is_device_id(claimed):
        detail = f"device_id {quote(claimed)} does not match {DEVICE_ID_PATTERN}"
        return Reject(index, Reason.INVALID_NAME, detail)
    if gateway:
        return None
    detail = f"device_id {quote(claimed)} is not the topic's or token's device {device_id!r}"
    return Reject(index, Reason.DEVICE_MISMATCH, detail)


def _v1_invalid(
    index: int, raw: object, exc: ValidationError, device_id: str, *, gateway: bool
) -> Reject:
    if isinstance(raw, dict):
        claimed = raw.get("device_id")
        if isinstance(claimed, str) and claimed != device_id:
            mismatch = _device_mismatch(index, claimed, device_id, gateway=gateway)
            if mismatch is not None:
                return mismatch
    errors = exc.errors(include_url=False, include_context=False)
    return Reject(index, *first_problem([error_problem(error) for error in errors]))


def _v1_item(
    index: int, entry: _V1Item, device_id: str, clock: Clock, *, gateway: bool
) -> Item | Reject:
    claimed = entry.get("device_id")
    child = None
    if claimed is not None and claimed != device_id:
        mismatch = _device_mismatch(index, claimed, device_id, gateway=gateway)
        if mismatch is not None:
            return mismatch
        child = claimed
    values = entry["values"]
    units = entry.get("units") or None
    if units is not None:
        stray = next((name for name in units if name not in values), None)
        if stray is not None:
            detail = f"units[{quote(stray)}] names no metric of values"
            return Reject(index, Reason.SCHEMA, detail)
    numbers, typed = _split(values)
    raw_ts = entry.get("ts")
    ts = clock.now
    if raw_ts is not None:
        read = (
            clock.from_rfc3339(raw_ts)
            if isinstance(raw_ts, str)
            else clock.from_epoch(raw_ts, "ts")
        )
        if isinstance(read, Problem):
            return Reject(index, *read)
        ts = read
    return Item(
        index,
        ts,
        entry.get("seq"),
        numbers,
        ts_from_server=raw_ts is None,
        typed=typed,
        units=units,
        device_id=child,
    )
