"""What both payload formats share: names, values, units, items, limits, times, error details.

A value is a finite number, a boolean or a string of at most 256 bytes of UTF-8 without NUL
(:data:`Text`); a unit is 1 to 32 printable characters (:data:`Unit`).
:class:`Clock` turns wire times into UTC datetimes relative to one receive time;
:func:`error_problem` turns a pydantic validation error into a reason and a detail that
names the field. Details quote untrusted text escaped and cut short (:func:`quote`), so a
hostile payload cannot forge log lines.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

import msgspec
from pydantic import (
    AfterValidator,
    AllowInfNan,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from ingest.wire.reasons import Problem, Reason, Reject

__all__ = [
    "DEFAULT_LIMITS",
    "DEVICE_ID_PATTERN",
    "EXACT_INT",
    "JSON_VALUE",
    "MAX_SEQ",
    "MAX_TEXT_BYTES",
    "METRIC_NAME_PATTERN",
    "RFC3339",
    "SENML_RELATIVE_BELOW_S",
    "UNIT_PATTERN",
    "Clock",
    "Finite",
    "Format",
    "Item",
    "Limits",
    "Parsed",
    "String",
    "Text",
    "Unit",
    "Value",
    "clock_at",
    "collect",
    "error_problem",
    "is_device_id",
    "is_metric_name",
    "is_unit",
    "malformed",
    "quote",
    "text_problem",
    "too_large",
]

_DEVICE_ID = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"
_METRIC_NAME = r"[A-Za-z][A-Za-z0-9_.:-]{0,63}"
DEVICE_ID_PATTERN: Final = f"^{_DEVICE_ID}$"
METRIC_NAME_PATTERN: Final = f"^{_METRIC_NAME}$"
# fullmatch, because Python's "$" also matches before a trailing newline.
is_device_id = re.compile(_DEVICE_ID).fullmatch
is_metric_name = re.compile(_METRIC_NAME).fullmatch
_UNIT = r"[^\x00-\x1f\x7f]{1,32}"
UNIT_PATTERN: Final = f"^{_UNIT}$"
is_unit = re.compile(_UNIT).fullmatch

#: A string value's limit, in bytes of UTF-8.
MAX_TEXT_BYTES: Final = 256
#: A reading's value: booleans and strings keep their type (``bool`` before ``float``).
Value = float | bool | str

RFC3339 = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_looks_naive = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9:.]+").fullmatch

MAX_SEQ: Final = 2**63 - 1  # a PostgreSQL bigint
EXACT_INT: Final = 2**53  # integers a float holds exactly
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_EPOCH_S: Final = 253_402_300_799.0  # 9999-12-31T23:59:59Z
SENML_RELATIVE_BELOW_S: Final = 2.0**28  # RFC 8428 section 4.5.3
_ECHO_CHARS: Final = 40

Finite = Annotated[float, Strict(), AllowInfNan(allow_inf_nan=False)]
String = Annotated[str, Strict()]
JSON_VALUE: Final = TypeAdapter[object](object)


def text_problem(text: str, field: str) -> Problem | None:
    """Say what keeps ``text`` from being stored as a string value of ``field``, if anything."""
    issue = _text_issue(text)
    return None if issue is None else Problem(issue[0], f"{field} {issue[1]}")


def _text_issue(text: str) -> tuple[Reason, str] | None:
    # A character is at most 4 bytes: short strings need no encoding to be measured.
    if len(text) > MAX_TEXT_BYTES // 4 and len(text.encode()) > MAX_TEXT_BYTES:
        return Reason.TOO_LONG, f"is {len(text.encode())} bytes, over {MAX_TEXT_BYTES}"
    if "\x00" in text:
        return Reason.SCHEMA, "holds a NUL character, which cannot be stored"
    return None


def _checked_text(text: str) -> str:
    issue = _text_issue(text)
    if issue is not None:
        # The error's type is the reason; error_problem puts the field in front.
        raise PydanticCustomError(issue[0].value, issue[1])
    return text


#: A string value, checked as :func:`text_problem` says (errors typed by their reason).
Text = Annotated[str, Strict(), AfterValidator(_checked_text)]
Unit = Annotated[str, StringConstraints(strict=True, pattern=UNIT_PATTERN)]

_EXPECTED: Final = {
    "values": "an object of metric names to values, with at least one entry",
    "units": "an object of metric names to units (1 to 32 printable characters)",
    "ts": "an RFC 3339 date-time with an offset, or epoch seconds",
    "seq": "an integer from 0 to 2**63 - 1",
    "bver": "a positive integer",
    "vb": "a boolean",
    **dict.fromkeys(("device_id", "bn", "n", "vs"), "a string"),
    **dict.fromkeys(("bu", "u"), "a unit (1 to 32 printable characters)"),
    "vd": "base64 data (URL-safe alphabet, padding optional)",
    **dict.fromkeys(("bt", "bv", "bs", "v", "s", "t", "ut"), "a number"),
}


class Format(enum.StrEnum):
    """Payload format: wire format v1 or SenML JSON."""

    JSON = "json"
    SENML = "senml"


class Item(msgspec.Struct):
    """One accepted reading-set: timezone-aware UTC ``ts`` and at least one value.

    ``values`` holds the numbers and ``typed`` the booleans and strings (None when there
    are none), so that numbers take the numeric path untouched. ``units`` maps metrics to
    the units given for them; ``device_id`` names a gateway's child the item is for (None:
    the sender itself).

    A msgspec struct, not a dataclass: a message of ten readings builds ten, and a struct
    is built in a fifth of the time. Nothing keeps an item beyond turning it into a
    reading-set.
    """

    index: int
    ts: datetime
    seq: int | None
    values: dict[str, float]
    ts_from_server: bool
    typed: dict[str, bool | str] | None = None
    units: dict[str, str] | None = None
    device_id: str | None = None


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


DEFAULT_LIMITS: Final = Limits()


def quote(text: str) -> str:
    """Quote untrusted text, escaped for logs, in at most 40 characters plus quotes."""
    shown = text[:_ECHO_CHARS]
    # An escape takes up to 10 characters (\U0001f600): count what is shown, not its source.
    while len(repr(shown)) > _ECHO_CHARS + 2:
        shown = shown[:-1]
    return repr(shown) if shown == text else f"{shown!r}..."


@functools.lru_cache(maxsize=8)
def clock_at(now: datetime, skew_s: float) -> Clock:
    """Return the clock of ``now``, cached: messages received together share one ``now``."""
    return Clock(now.astimezone(UTC), skew_s)


class Clock:
    """Turns wire times into UTC datetimes and range problems, relative to one ``now``."""

    __slots__ = ("latest", "latest_s", "now", "now_s", "skew_s")

    def __init__(self, now: datetime, skew_s: float) -> None:
        self.now = now
        self.now_s = now.timestamp()
        self.skew_s = skew_s
        self.latest = now + timedelta(seconds=skew_s)
        self.latest_s = self.now_s + skew_s

    def from_rfc3339(self, text: str) -> datetime | Problem:
        """Read an RFC 3339 time (already matched by the pattern) or say what is wrong."""
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            # RFC 3339 allows a lower-case "t" and "z"; fromisoformat does not.
            try:
                parsed = datetime.fromisoformat(text.upper())
            except ValueError:
                return Problem(Reason.SCHEMA, f"ts {quote(text)} is not a valid date and time")
        if parsed < _EPOCH:
            return Problem(Reason.SCHEMA, f"ts {quote(text)} is before 1970")
        if parsed > self.latest:
            return self._future("ts", (parsed - self.now).total_seconds())
        return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)

    def from_epoch(self, seconds: float, field: str) -> datetime | Problem:
        """Read epoch seconds given in ``field`` or say what is wrong."""
        if seconds < 0:
            return Problem(Reason.SCHEMA, f"{field} {seconds:.15g} is before 1970")
        if seconds > self.latest_s:
            if seconds > _MAX_EPOCH_S:
                return Problem(Reason.SCHEMA, f"{field} {seconds:.15g} is after the year 9999")
            return self._future(field, seconds - self.now_s)
        return datetime.fromtimestamp(seconds, UTC)

    def from_senml(self, seconds: float) -> datetime | Problem:
        """Resolve a SenML time (bt + t): absolute from 2**28 on, else relative to ``now``."""
        if seconds >= SENML_RELATIVE_BELOW_S:
            return self.from_epoch(seconds, "time (bt + t)")
        if seconds > self.skew_s:
            return self._future("relative time (bt + t)", seconds)
        if seconds < -self.now_s:
            return Problem(Reason.SCHEMA, f"relative time (bt + t) {seconds:.15g} s is before 1970")
        return self.now + timedelta(seconds=seconds)

    def _future(self, field: str, ahead_s: float) -> Problem:
        return Problem(
            Reason.FUTURE_TIMESTAMP,
            f"{field} is {ahead_s:.0f} s ahead of the server clock (limit {self.skew_s:g} s)",
        )


def malformed(exc: ValidationError) -> Parsed:
    """Reject a body that is not JSON, saying where the parser gave up."""
    error = exc.errors(include_url=False, include_context=False, include_input=False)[0]
    where = error["msg"].removeprefix("Invalid JSON: ")
    return Parsed([], [Reject(-1, Reason.MALFORMED_JSON, f"body is not JSON: {where}")], 0)


def too_large(total: int, limits: Limits) -> Parsed | None:
    """Reject a message of more items than ``limits`` allow; None when within them."""
    if total <= limits.max_items:
        return None
    detail = f"the message has {total} items, more than the limit of {limits.max_items}"
    return Parsed([], [Reject(-1, Reason.TOO_LARGE, detail)], total)


def collect(outcomes: list[Item | Reject | None], total: int) -> Parsed:
    """Sort the outcomes of a message's items into a :class:`Parsed`."""
    items = [outcome for outcome in outcomes if isinstance(outcome, Item)]
    rejects = [outcome for outcome in outcomes if isinstance(outcome, Reject)]
    return Parsed(items, rejects, total)


def error_problem(error: ErrorDetails) -> Problem:
    """Name the field a validation error is about and classify it."""
    loc, kind, given = error["loc"], error["type"], error.get("input")
    if not loc:
        return Problem(Reason.SCHEMA, "the item must be a JSON object")
    field = str(loc[0])
    if kind == "missing":
        return Problem(Reason.SCHEMA, f"{field} is required")
    if field in ("values", "units") and len(loc) > 1:
        in_key = loc[2:3] == ("[key]",)
        return _metric_error_problem(error, field, str(loc[1]), in_key)
    problem = _value_problem(error, field)
    if problem is not None:
        return problem
    if field == "ts" and isinstance(given, str) and _looks_naive(given):
        return Problem(Reason.SCHEMA, f"ts {quote(given)} has no UTC offset (Z or +hh:mm)")
    return Problem(Reason.SCHEMA, f"{field} must be {_EXPECTED.get(field, 'of another type')}")


# Errors our own validators raise are typed by the reason they stand for.
_CUSTOM_REASONS: Final = frozenset({Reason.TOO_LONG.value, Reason.SCHEMA.value})


def _metric_error_problem(error: ErrorDetails, field: str, metric: str, in_key: bool) -> Problem:
    where = f"{field}[{quote(metric)}]"
    if in_key:
        detail = f"metric name {quote(metric)} does not match {METRIC_NAME_PATTERN}"
        return Problem(Reason.INVALID_NAME, detail)
    if field == "units":
        return Problem(Reason.SCHEMA, f"{where} must be a unit (1 to 32 printable characters)")
    given = error.get("input")
    # Every member of the value union fails for a bad string: name what is wrong with it.
    text = text_problem(given, where) if isinstance(given, str) else None
    return (
        text
        or _value_problem(error, where)
        or Problem(Reason.SCHEMA, f"{where} must be a number, a boolean or a string")
    )


def _value_problem(error: ErrorDetails, where: str) -> Problem | None:
    """Problems of a value that outrank a plain schema error: too long, not finite."""
    kind = error["type"]
    if kind in _CUSTOM_REASONS:
        return Problem(Reason(kind), f"{where} {error['msg']}")
    if _not_finite(kind, error.get("input")):
        return Problem(Reason.NON_FINITE, f"{where} is not a finite number")
    return None


def _not_finite(kind: str, given: object) -> bool:
    # A JSON integer too large for a float reaches the slow path as a Python int.
    return kind == "finite_number" or (
        kind == "float_type" and isinstance(given, int) and not isinstance(given, bool)
    )
