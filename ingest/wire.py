"""Parsing and validation of telemetry messages: wire format v1 and SenML (RFC 8428, JSON).

This is the ingest server's trust boundary. :func:`parse_topic` checks an MQTT topic and
:func:`parse_payload` turns the raw bytes of a message into accepted :class:`Item` objects
and :class:`Reject` records. It never raises for any input bytes: every problem becomes a
``Reject`` with a stable reason code. One bad item never rejects its neighbours.

Reason codes (:class:`Reason`), sent to devices and stored with dead letters:

- ``malformed_json``: the body is not JSON: bad syntax, invalid UTF-8, nesting deeper than
  about 200 levels, or an integer literal of more than 4300 digits (the parser's limits).
- ``schema``: JSON of the wrong shape: a missing or mistyped field, empty ``values``, a
  ``ts`` that is not RFC 3339 with an offset, a time before 1970 or after 9999, a ``seq``
  that is not an integer from 0 to 2**63 - 1, a SenML record without a value.
- ``invalid_name``: a device id or metric name that does not match its pattern.
- ``device_mismatch``: the payload's ``device_id`` differs from the topic's or token's device.
- ``unknown_device``: the device is not registered (set by the pipeline, never by the parser).
- ``future_timestamp``: the time is more than ``Limits.max_future_skew_s`` ahead of ``now``.
- ``non_finite``: NaN, Infinity, or a number too large for a float (``1e400``).
- ``unsupported_value``: a SenML string (``vs``), data (``vd``) or sum-only (``s``) record.
- ``too_large``: more items than ``Limits.max_items`` (or, in the pipeline, too many bytes).
- ``invalid_topic``: an MQTT topic other than ``telemetry/{id}`` or ``telemetry/{id}/senml``.
- ``too_old``: the time is older than the retention period (set by the pipeline), so it
  would be dropped at once.

An item with several problems gets one reject, with the first reason of: device_mismatch,
invalid_name, non_finite, unsupported_value, schema, future_timestamp.

Wire format v1 accepts unknown object fields and ignores them (forward compatibility); a
known field is either absent or of its type (``null`` is a schema error). SenML accepts and
ignores units (``u``, ``bu``), sums next to a value, update times (``ut``) and unknown
fields, except that a field whose label ends in ``_`` is an error (RFC 8428 section 4.4).
SenML base fields carry forward as the RFC says; a record holding only base fields yields
no item and no reject, but counts in ``Parsed.total``. A record that inherits an invalid
base field, or a version (``bver``) above 10, is rejected as schema. A resolved time below
2**28 is relative to ``now``, and such items, like items without a time, are flagged
``ts_from_server``. When the base name ends in ``/`` or ``:`` it names the device (the
topic or token is authoritative, so it is not compared) and the metric is ``n``; otherwise
the metric is the whole resolved name.

The whole message is validated by one ``validate_json`` call on the raw bytes (the fast
path). Only when that fails is the body parsed into plain JSON values and each item
validated on its own, to find which items are bad and why.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, NamedTuple, Required

from pydantic import (
    AllowInfNan,
    Field,
    GetCoreSchemaHandler,
    GetPydanticSchema,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    with_config,
)
from pydantic_core import ErrorDetails, core_schema, from_json
from typing_extensions import TypedDict  # pydantic needs it for TypedDict before 3.12

__all__ = [
    "DEVICE_ID_PATTERN",
    "METRIC_NAME_PATTERN",
    "Format",
    "Item",
    "Limits",
    "Parsed",
    "Reason",
    "Reject",
    "parse_payload",
    "parse_topic",
]

_DEVICE_ID = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"
_METRIC_NAME = r"[A-Za-z][A-Za-z0-9_.:-]{0,63}"
DEVICE_ID_PATTERN: Final = f"^{_DEVICE_ID}$"
METRIC_NAME_PATTERN: Final = f"^{_METRIC_NAME}$"
# fullmatch, because Python's "$" also matches before a trailing newline.
_is_device_id = re.compile(_DEVICE_ID).fullmatch
_is_metric_name = re.compile(_METRIC_NAME).fullmatch

_RFC3339 = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_looks_naive = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9:.]+").fullmatch
# The same pattern for the fast path; fullmatch, as Python's "$" passes a trailing newline.
_is_rfc3339 = re.compile(_RFC3339[1:-1]).fullmatch

_MAX_SEQ: Final = 2**63 - 1  # a PostgreSQL bigint
_EXACT_INT: Final = 2**53  # integers a float holds exactly
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_EPOCH_S: Final = 253_402_300_799.0  # 9999-12-31T23:59:59Z
_SENML_RELATIVE_BELOW_S: Final = 2.0**28  # RFC 8428 section 4.5.3
_SENML_VERSION: Final = 10
_ECHO_CHARS: Final = 40
_JSON_WHITESPACE: Final = b" \t\r\n"


class Reason(enum.StrEnum):
    """Why an item or a message was rejected; the values are a stable public contract."""

    MALFORMED_JSON = "malformed_json"
    SCHEMA = "schema"
    INVALID_NAME = "invalid_name"
    DEVICE_MISMATCH = "device_mismatch"
    UNKNOWN_DEVICE = "unknown_device"
    FUTURE_TIMESTAMP = "future_timestamp"
    NON_FINITE = "non_finite"
    UNSUPPORTED_VALUE = "unsupported_value"
    TOO_LARGE = "too_large"
    INVALID_TOPIC = "invalid_topic"
    TOO_OLD = "too_old"


class Format(enum.StrEnum):
    """Payload format: wire format v1 or SenML JSON."""

    JSON = "json"
    SENML = "senml"


@dataclass(slots=True)
class Item:
    """One accepted reading-set: timezone-aware UTC ``ts`` and at least one value.

    Not frozen: a message of ten readings builds ten, and a frozen dataclass costs four
    times as much to build. Nothing keeps an item beyond turning it into a reading-set.
    """

    index: int
    ts: datetime
    seq: int | None
    values: dict[str, float]
    ts_from_server: bool


@dataclass(frozen=True, slots=True)
class Reject:
    """One rejected item (``index`` -1: the whole message) with a short ``detail``."""

    index: int
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Parsed:
    """The outcome of one message; ``total`` counts its items (0 when unparseable)."""

    items: list[Item]
    rejects: list[Reject]
    total: int


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits applied while parsing."""

    max_future_skew_s: float = 300.0
    max_items: int = 10_000


_DEFAULT_LIMITS: Final = Limits()


class _Problem(NamedTuple):
    reason: Reason
    detail: str


_RANK: Final = {
    reason: rank
    for rank, reason in enumerate(
        (
            Reason.DEVICE_MISMATCH,
            Reason.INVALID_NAME,
            Reason.NON_FINITE,
            Reason.UNSUPPORTED_VALUE,
            Reason.SCHEMA,
            Reason.FUTURE_TIMESTAMP,
        )
    )
}


def _number_or_bool(_source: Any, _handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
    # Booleans become 1.0/0.0 here, so the validated dict is stored as is.
    return core_schema.union_schema(
        [
            core_schema.float_schema(strict=True, allow_inf_nan=False),
            core_schema.no_info_after_validator_function(
                float, core_schema.bool_schema(strict=True)
            ),
        ]
    )


_Finite = Annotated[float, Strict(), AllowInfNan(allow_inf_nan=False)]
_String = Annotated[str, Strict()]
_MetricName = Annotated[str, StringConstraints(strict=True, pattern=METRIC_NAME_PATTERN)]
_Value = Annotated[float, GetPydanticSchema(_number_or_bool)]
# A strict string with a pattern, parsed by datetime.fromisoformat later: pydantic's own
# datetime would also take "1700000000" and read large numbers as milliseconds.
_Rfc3339 = Annotated[str, StringConstraints(strict=True, pattern=_RFC3339)]


class _V1Item(TypedDict, total=False):
    values: Required[Annotated[dict[_MetricName, _Value], Field(min_length=1)]]
    ts: _Finite | _Rfc3339
    seq: Annotated[int, Strict(), Field(ge=0, le=_MAX_SEQ)]
    device_id: _String


@with_config({"extra": "allow"})
class _SenMLRecord(TypedDict, total=False):
    bn: _String
    bt: _Finite
    bu: _String
    bv: _Finite
    bs: _Finite
    bver: Annotated[int, Strict(), Field(ge=1)]
    n: _String
    u: _String
    v: _Finite
    vs: _String
    vb: Annotated[bool, Strict()]
    vd: _String
    s: _Finite
    t: _Finite
    ut: _Finite


_V1_ITEM: Final = TypeAdapter(_V1Item)
_V1_BATCH: Final = TypeAdapter(list[_V1Item])
_SENML_RECORD: Final = TypeAdapter(_SenMLRecord)
_SENML_PACK: Final = TypeAdapter(list[_SenMLRecord])
_JSON_VALUE: Final = TypeAdapter[object](object)

_EXPECTED: Final = {
    "values": "an object of metric names to numbers, with at least one entry",
    "ts": "an RFC 3339 date-time with an offset, or epoch seconds",
    "seq": "an integer from 0 to 2**63 - 1",
    "bver": "a positive integer",
    "vb": "a boolean",
    **dict.fromkeys(("device_id", "bn", "bu", "n", "u", "vs", "vd"), "a string"),
    **dict.fromkeys(("bt", "bv", "bs", "v", "s", "t", "ut"), "a number"),
}
_TRACKED_BASES: Final = frozenset({"bn", "bt", "bv", "bver"})  # bu and bs are ignored
_REGULAR_FIELDS: Final = frozenset({"n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"})
_BASE_FIELDS: Final = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})
_KNOWN_FIELDS: Final = _REGULAR_FIELDS | _BASE_FIELDS
_VALUE_FIELDS: Final = frozenset({"v", "vb", "vs", "vd"})
_STORED_VALUE_FIELDS: Final = frozenset({"v", "vb"})


def _quote(text: str) -> str:
    """Quote untrusted text, escaped for logs, in at most 40 characters plus quotes."""
    shown = text[:_ECHO_CHARS]
    # An escape takes up to 10 characters (\U0001f600): count what is shown, not its source.
    while len(repr(shown)) > _ECHO_CHARS + 2:
        shown = shown[:-1]
    return repr(shown) if shown == text else f"{shown!r}..."


def parse_topic(topic: str) -> tuple[str, Format] | Reject:
    """Split ``telemetry/{device_id}[/senml]`` into the device id and the payload format."""
    parts = topic.split("/", 3)
    if parts[0] != "telemetry" or parts[2:] not in ([], ["senml"]) or len(parts) < 2:
        return Reject(
            -1,
            Reason.INVALID_TOPIC,
            f"topic {_quote(topic)} is not telemetry/{{device id}}[/senml]",
        )
    device_id = parts[1]
    if not _is_device_id(device_id):
        return Reject(
            -1,
            Reason.INVALID_NAME,
            f"device id {_quote(device_id)} in the topic does not match {DEVICE_ID_PATTERN}",
        )
    return device_id, Format.SENML if len(parts) == 3 else Format.JSON


def parse_payload(
    body: bytes,
    fmt: Format,
    device_id: str,
    now: datetime,
    limits: Limits = _DEFAULT_LIMITS,
) -> Parsed:
    """Validate one message of ``device_id`` (already authenticated), received at ``now``.

    ``now`` must be timezone-aware; it stands in for absent and relative times.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    clock = _clock(now, limits.max_future_skew_s)
    if fmt is Format.SENML:
        return _parse_senml(body, clock, limits)
    return _parse_v1(body, device_id, clock, limits)


@functools.lru_cache(maxsize=8)
def _clock(now: datetime, skew_s: float) -> _Clock:
    """Return the clock of ``now``, cached: messages received together share one ``now``."""
    return _Clock(now.astimezone(UTC), skew_s)


class _Clock:
    """Turns wire times into UTC datetimes and range problems, relative to one ``now``."""

    __slots__ = ("latest", "latest_s", "now", "now_s", "skew_s")

    def __init__(self, now: datetime, skew_s: float) -> None:
        self.now = now
        self.now_s = now.timestamp()
        self.skew_s = skew_s
        self.latest = now + timedelta(seconds=skew_s)
        self.latest_s = self.now_s + skew_s

    def from_rfc3339(self, text: str) -> datetime | _Problem:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            # RFC 3339 allows a lower-case "t" and "z"; fromisoformat does not.
            try:
                parsed = datetime.fromisoformat(text.upper())
            except ValueError:
                return _Problem(Reason.SCHEMA, f"ts {_quote(text)} is not a valid date and time")
        if parsed < _EPOCH:
            return _Problem(Reason.SCHEMA, f"ts {_quote(text)} is before 1970")
        if parsed > self.latest:
            return self._future("ts", (parsed - self.now).total_seconds())
        return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)

    def from_epoch(self, seconds: float, field: str) -> datetime | _Problem:
        if seconds < 0:
            return _Problem(Reason.SCHEMA, f"{field} {seconds:.15g} is before 1970")
        if seconds > self.latest_s:
            if seconds > _MAX_EPOCH_S:
                return _Problem(Reason.SCHEMA, f"{field} {seconds:.15g} is after the year 9999")
            return self._future(field, seconds - self.now_s)
        return datetime.fromtimestamp(seconds, UTC)

    def from_senml(self, seconds: float) -> datetime | _Problem:
        """Resolve a SenML time (bt + t): absolute from 2**28 on, else relative to ``now``."""
        if seconds >= _SENML_RELATIVE_BELOW_S:
            return self.from_epoch(seconds, "time (bt + t)")
        if seconds > self.skew_s:
            return self._future("relative time (bt + t)", seconds)
        if seconds < -self.now_s:
            return _Problem(
                Reason.SCHEMA, f"relative time (bt + t) {seconds:.15g} s is before 1970"
            )
        return self.now + timedelta(seconds=seconds)

    def _future(self, field: str, ahead_s: float) -> _Problem:
        return _Problem(
            Reason.FUTURE_TIMESTAMP,
            f"{field} is {ahead_s:.0f} s ahead of the server clock (limit {self.skew_s:g} s)",
        )


def _malformed(exc: ValidationError) -> Parsed:
    """Reject a body that is not JSON, saying where the parser gave up."""
    error = exc.errors(include_url=False, include_context=False, include_input=False)[0]
    where = error["msg"].removeprefix("Invalid JSON: ")
    return Parsed([], [Reject(-1, Reason.MALFORMED_JSON, f"body is not JSON: {where}")], 0)


def _too_large(total: int, limits: Limits) -> Parsed | None:
    if total <= limits.max_items:
        return None
    detail = f"the message has {total} items, more than the limit of {limits.max_items}"
    return Parsed([], [Reject(-1, Reason.TOO_LARGE, detail)], total)


def _parsed(outcomes: list[Item | Reject | None], total: int) -> Parsed:
    items = [outcome for outcome in outcomes if isinstance(outcome, Item)]
    rejects = [outcome for outcome in outcomes if isinstance(outcome, Reject)]
    return Parsed(items, rejects, total)


def _error_problem(error: ErrorDetails) -> _Problem:
    """Name the field a validation error is about and classify it."""
    loc, kind, given = error["loc"], error["type"], error.get("input")
    if not loc:
        return _Problem(Reason.SCHEMA, "the item must be a JSON object")
    field = str(loc[0])
    if kind == "missing":
        return _Problem(Reason.SCHEMA, f"{field} is required")
    if field == "values" and len(loc) > 1:
        return _metric_error_problem(str(loc[1]), loc[2:3] == ("[key]",), kind, given)
    if _not_finite(kind, given):
        return _Problem(Reason.NON_FINITE, f"{field} is not a finite number")
    if field == "ts" and isinstance(given, str) and _looks_naive(given):
        return _Problem(Reason.SCHEMA, f"ts {_quote(given)} has no UTC offset (Z or +hh:mm)")
    return _Problem(Reason.SCHEMA, f"{field} must be {_EXPECTED.get(field, 'of another type')}")


def _metric_error_problem(metric: str, in_key: bool, kind: str, given: object) -> _Problem:
    if in_key:
        detail = f"metric name {_quote(metric)} does not match {METRIC_NAME_PATTERN}"
        return _Problem(Reason.INVALID_NAME, detail)
    if _not_finite(kind, given):
        return _Problem(Reason.NON_FINITE, f"values[{_quote(metric)}] is not a finite number")
    return _Problem(Reason.SCHEMA, f"values[{_quote(metric)}] must be a number or a boolean")


def _not_finite(kind: str, given: object) -> bool:
    # A JSON integer too large for a float reaches the slow path as a Python int.
    return kind == "finite_number" or (
        kind == "float_type" and isinstance(given, int) and not isinstance(given, bool)
    )


def _first(problems: list[_Problem]) -> _Problem:
    return min(problems, key=lambda problem: _RANK[problem.reason])


# --- wire format v1 ----------------------------------------------------------------------


def _parse_v1(body: bytes, device_id: str, clock: _Clock, limits: Limits) -> Parsed:
    fast = _parse_v1_valid(body, device_id, clock, limits)
    if fast is not None:
        return fast
    batch = body.lstrip(_JSON_WHITESPACE)[:1] == b"["
    try:
        entries = _V1_BATCH.validate_json(body) if batch else [_V1_ITEM.validate_json(body)]
    except ValidationError:
        return _parse_v1_slowly(body, device_id, clock, limits)
    return _too_large(len(entries), limits) or _parsed(
        [_v1_item(index, entry, device_id, clock) for index, entry in enumerate(entries)],
        len(entries),
    )


_V1_FIELDS: Final = frozenset(_V1Item.__annotations__)
_METRIC_NAMES_MAX: Final = 10_000
_metric_names_seen: set[str] = set()  # names that matched the pattern: skip the regex


def _parse_v1_valid(body: bytes, device_id: str, clock: _Clock, limits: Limits) -> Parsed | None:
    """Parse a message whose every item is valid, without pydantic's validation; else None.

    Almost every message is valid, and checking the common shape by hand costs a third of
    validating it. Anything unusual (an invalid item, a field this path does not know, an
    integer too large for an exact float) returns None and takes the full path, so every
    reject still comes from one place. The JSON parser is the one ``validate_json`` uses.
    """
    try:
        document = from_json(body)
    except (ValueError, RecursionError):
        return None
    if type(document) is list:
        entries: list[Any] = document
    elif type(document) is dict:
        entries = [document]
    else:
        return None
    if len(entries) > limits.max_items:
        return None
    items = []
    for index, entry in enumerate(entries):
        item = _v1_valid_item(index, entry, device_id, clock)
        if item is None:
            return None
        items.append(item)
    return Parsed(items, [], len(entries))


def _v1_valid_item(index: int, entry: Any, device_id: str, clock: _Clock) -> Item | None:
    """Build the item of a valid ``entry`` (plain JSON values), else None; see above."""
    if (
        type(entry) is not dict
        or not _V1_FIELDS.issuperset(entry)
        or entry.get("device_id", device_id) != device_id
    ):
        return None
    values = _valid_values(entry.get("values"))
    seq = entry.get("seq")
    if values is None or ("seq" in entry and not (type(seq) is int and 0 <= seq <= _MAX_SEQ)):
        return None
    if "ts" not in entry:
        return Item(index, clock.now, seq, values, ts_from_server=True)
    ts = _valid_ts(entry["ts"], clock)
    return None if ts is None else Item(index, ts, seq, values, ts_from_server=False)


def _valid_ts(raw: object, clock: _Clock) -> datetime | None:
    """Return the time of a valid ``ts`` (RFC 3339 or epoch seconds, in range), else None."""
    ts: datetime | _Problem
    if type(raw) is str:
        if not _is_rfc3339(raw):
            return None
        ts = clock.from_rfc3339(raw)
    elif type(raw) is float or (type(raw) is int and -_EXACT_INT <= raw <= _EXACT_INT):
        if not math.isfinite(raw):
            return None
        ts = clock.from_epoch(float(raw), "ts")
    else:
        return None
    return None if isinstance(ts, _Problem) else ts


def _valid_values(values: object) -> dict[str, float] | None:
    """Return ``values`` as pydantic would when every name and value is valid, else None."""
    if type(values) is not dict or not values:
        return None
    exact = True
    for name, value in values.items():
        if name not in _metric_names_seen:
            if not _is_metric_name(name):
                return None
            if len(_metric_names_seen) < _METRIC_NAMES_MAX:
                _metric_names_seen.add(name)
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                return None
        elif kind is bool or (kind is int and -_EXACT_INT <= value <= _EXACT_INT):
            exact = False
        else:
            return None
    return values if exact else {name: float(value) for name, value in values.items()}


def _parse_v1_slowly(body: bytes, device_id: str, clock: _Clock, limits: Limits) -> Parsed:
    """Validate item by item to find out which items are bad and why."""
    try:
        document = _JSON_VALUE.validate_json(body)
    except ValidationError as exc:
        return _malformed(exc)
    if isinstance(document, list):
        raw_items: list[object] = document
    elif isinstance(document, dict):
        raw_items = [document]
    else:
        detail = "the message must be a JSON object or an array of objects"
        return Parsed([], [Reject(-1, Reason.SCHEMA, detail)], 0)
    too_large = _too_large(len(raw_items), limits)
    if too_large is not None:
        return too_large
    outcomes: list[Item | Reject | None] = []
    for index, raw in enumerate(raw_items):
        try:
            entry = _V1_ITEM.validate_python(raw)
        except ValidationError as exc:
            outcomes.append(_v1_invalid(index, raw, exc, device_id))
        else:
            outcomes.append(_v1_item(index, entry, device_id, clock))
    return _parsed(outcomes, len(raw_items))


def _device_mismatch(index: int, claimed: str, device_id: str) -> Reject:
    if not _is_device_id(claimed):
        detail = f"device_id {_quote(claimed)} does not match {DEVICE_ID_PATTERN}"
        return Reject(index, Reason.INVALID_NAME, detail)
    detail = f"device_id {_quote(claimed)} is not the topic's or token's device {device_id!r}"
    return Reject(index, Reason.DEVICE_MISMATCH, detail)


def _v1_invalid(index: int, raw: object, exc: ValidationError, device_id: str) -> Reject:
    if isinstance(raw, dict):
        claimed = raw.get("device_id")
        if isinstance(claimed, str) and claimed != device_id:
            return _device_mismatch(index, claimed, device_id)
    errors = exc.errors(include_url=False, include_context=False)
    return Reject(index, *_first([_error_problem(error) for error in errors]))


def _v1_item(index: int, entry: _V1Item, device_id: str, clock: _Clock) -> Item | Reject:
    claimed = entry.get("device_id")
    if claimed is not None and claimed != device_id:
        return _device_mismatch(index, claimed, device_id)
    raw_ts = entry.get("ts")
    if raw_ts is None:
        return Item(index, clock.now, entry.get("seq"), entry["values"], ts_from_server=True)
    ts = clock.from_rfc3339(raw_ts) if isinstance(raw_ts, str) else clock.from_epoch(raw_ts, "ts")
    if isinstance(ts, _Problem):
        return Reject(index, *ts)
    return Item(index, ts, entry.get("seq"), entry["values"], ts_from_server=False)


# --- SenML -------------------------------------------------------------------------------


def _parse_senml(body: bytes, clock: _Clock, limits: Limits) -> Parsed:
    try:
        records = _SENML_PACK.validate_json(body)
    except ValidationError:
        return _parse_senml_slowly(body, clock, limits)
    resolver = _SenMLResolver(clock)
    return _too_large(len(records), limits) or _parsed(
        [resolver.resolve(index, record) for index, record in enumerate(records)],
        len(records),
    )


def _parse_senml_slowly(body: bytes, clock: _Clock, limits: Limits) -> Parsed:
    """Validate record by record, keeping the valid fields of bad records for base values."""
    try:
        document = _JSON_VALUE.validate_json(body)
    except ValidationError as exc:
        return _malformed(exc)
    if not isinstance(document, list):
        detail = "the message must be a SenML pack: a JSON array of records"
        return Parsed([], [Reject(-1, Reason.SCHEMA, detail)], 0)
    too_large = _too_large(len(document), limits)
    if too_large is not None:
        return too_large
    resolver = _SenMLResolver(clock)
    outcomes: list[Item | Reject | None] = []
    for index, raw in enumerate(document):
        if not isinstance(raw, dict):
            outcomes.append(Reject(index, Reason.SCHEMA, "a SenML record must be a JSON object"))
            continue
        try:
            record = _SENML_RECORD.validate_python(raw)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False)
            bad = {str(error["loc"][0]) for error in errors}
            # Fields validate independently, so the rest of the record passes on its own.
            valid = _SENML_RECORD.validate_python({k: v for k, v in raw.items() if k not in bad})
            problems = [_error_problem(error) for error in errors]
            outcomes.append(resolver.reject(index, valid, problems, bad, raw.keys()))
        else:
            outcomes.append(resolver.resolve(index, record))
    return _parsed(outcomes, len(document))


class _SenMLResolver:
    """Carries base fields forward through a pack and resolves each record (RFC 8428 4.6)."""

    __slots__ = ("_broken", "_bt", "_bv", "_bver", "_clock", "_prefix", "_separated")

    def __init__(self, clock: _Clock) -> None:
        self._clock = clock
        self._prefix = ""
        self._separated = False
        self._bt = 0.0
        self._bv = 0.0
        self._bver = _SENML_VERSION
        # base field -> index of the record that set it to an invalid value
        self._broken: dict[str, int] = {}

    def resolve(self, index: int, record: _SenMLRecord) -> Item | Reject | None:
        """Resolve a valid record: an item, a reject, or None for a base-only record."""
        self._take_bases(record)
        if record.keys().isdisjoint(_REGULAR_FIELDS):
            if record.keys().isdisjoint(_BASE_FIELDS):
                return Reject(
                    index, Reason.SCHEMA, "the record has neither a value nor a base field"
                )
            problem = self._envelope_problem(record, reading=False)
            return None if problem is None else Reject(index, *problem)
        outcome = self._envelope_problem(record, reading=True) or self._reading(index, record)
        return Reject(index, *outcome) if isinstance(outcome, _Problem) else outcome

    def reject(
        self,
        index: int,
        valid: _SenMLRecord,
        problems: list[_Problem],
        bad: AbstractSet[str],
        labels: AbstractSet[str],
    ) -> Reject:
        """Reject an invalid record (``valid``: without its ``bad`` fields) with its first reason.

        Its valid base fields still apply to later records. Only the checks that can outrank
        its own schema errors run, and only on fields that are known.
        """
        for field in _TRACKED_BASES.intersection(bad):
            self._broken[field] = index
        self._take_bases(valid)
        if labels.isdisjoint(_REGULAR_FIELDS):
            return Reject(index, *_first(problems))
        unknown = bad | self._broken.keys()
        metric = self._metric(valid) if unknown.isdisjoint(("n", "bn")) else None
        if isinstance(metric, _Problem):
            return Reject(index, *metric)
        known_v = "v" in valid and "bv" not in unknown
        value = self._bv + valid["v"] if known_v else None
        seconds = self._bt + valid.get("t", 0.0) if unknown.isdisjoint(("t", "bt")) else None
        problem = _value_problem(labels, value, seconds)
        return Reject(index, *_first([*problems, problem] if problem else problems))

    def _take_bases(self, record: _SenMLRecord) -> None:
        if "bn" in record:
            base_name = record["bn"]
            self._separated = base_name.endswith(("/", ":"))
            self._prefix = "" if self._separated else base_name
            self._broken.pop("bn", None)
        if "bt" in record:
            self._bt = record["bt"]
            self._broken.pop("bt", None)
        if "bv" in record:
            self._bv = record["bv"]
            self._broken.pop("bv", None)
        if "bver" in record:
            self._bver = record["bver"]
            self._broken.pop("bver", None)

    def _envelope_problem(self, record: _SenMLRecord, *, reading: bool) -> _Problem | None:
        """Problems that forbid reading anything from the record, so they come first."""
        if not _KNOWN_FIELDS.issuperset(record):
            mandatory = [label for label in record if label.endswith("_")]
            if mandatory:
                detail = f"unknown must-understand field {_quote(mandatory[0])}"
                return _Problem(Reason.SCHEMA, detail)
        if self._bver > _SENML_VERSION and (reading or "bver" in record):
            detail = f"SenML version {self._bver} is newer than {_SENML_VERSION}"
            return _Problem(Reason.SCHEMA, detail)
        if reading and self._broken:
            for field in ("bver", "bn", "bt", "bv"):
                if field in self._broken and (field != "bv" or "v" in record):
                    detail = f"inherits the invalid {field} of record {self._broken[field]}"
                    return _Problem(Reason.SCHEMA, detail)
        return None

    def _reading(self, index: int, record: _SenMLRecord) -> Item | _Problem:
        """Resolve a record whose envelope is sound, checking in the order of ``_RANK``."""
        metric = self._metric(record)
        if isinstance(metric, _Problem):
            return metric
        value = self._bv + record["v"] if "v" in record else float(record.get("vb", 0.0))
        seconds = self._bt + record.get("t", 0.0)
        problem = _value_problem(record.keys(), value, seconds)
        if problem is not None:
            return problem
        ts = self._clock.from_senml(seconds)
        if isinstance(ts, _Problem):
            return ts
        relative = seconds < _SENML_RELATIVE_BELOW_S
        return Item(index, ts, None, {metric: value}, ts_from_server=relative)

    def _metric(self, record: _SenMLRecord) -> str | _Problem:
        name = record.get("n", "")
        metric = name if self._separated else self._prefix + name
        if _is_metric_name(metric):
            return metric
        detail = f"metric name {_quote(metric)} (bn + n) does not match {METRIC_NAME_PATTERN}"
        return _Problem(Reason.INVALID_NAME, detail)


def _value_problem(
    labels: AbstractSet[str], value: float | None, seconds: float | None
) -> _Problem | None:
    """Check the value fields, and the resolved value and time where they are known."""
    if value is not None and not math.isfinite(value):
        return _Problem(Reason.NON_FINITE, "v + bv is not a finite number")
    if seconds is not None and not math.isfinite(seconds):
        return _Problem(Reason.NON_FINITE, "t + bt is not a finite number")
    kinds = _VALUE_FIELDS.intersection(labels)
    if len(kinds) == 1:
        if kinds <= _STORED_VALUE_FIELDS:
            return None
        (kind,) = kinds
        detail = f"{kind} values are not stored, only v and vb"
        return _Problem(Reason.UNSUPPORTED_VALUE, detail)
    if not kinds and "s" in labels:
        return _Problem(Reason.UNSUPPORTED_VALUE, "records with only a sum (s) are not stored")
    found = f"{len(kinds)} value fields" if kinds else "no value field"
    return _Problem(Reason.SCHEMA, f"the record has {found}; it needs exactly one of v or vb")
