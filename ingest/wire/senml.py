"""SenML (RFC 8428, JSON): a pack of records, base fields carried forward.

A record's value is a number (``v``, plus ``bv``), a boolean (``vb``), a string (``vs``) or
data (``vd``: base64 text, URL-safe alphabet, padding optional, stored as that string);
strings and data are at most 256 bytes. Its unit is ``u``, else the base unit ``bu``. Sums
next to a value, update times (``ut``) and unknown fields are accepted and ignored, except
that a field whose label ends in ``_`` is an error (RFC 8428 section 4.4). Base fields
carry forward as the RFC says; a record holding only base fields yields no item and no
reject, but counts in ``Parsed.total``. A record that inherits an invalid base field, or a
version (``bver``) above 10, is rejected as schema. A resolved time below 2**28 is relative
to ``now``, and such items, like items without a time, are flagged ``ts_from_server``. When
the base name ends in ``/`` or ``:`` it names the device and the metric is ``n``; otherwise
the metric is the whole resolved name. The device it names is compared only for a gateway,
whose records for another device are that child's (``Item.device_id``); for any other
device the topic or token is authoritative.

The whole pack is validated by one ``validate_json`` call; only when that fails is each
record validated on its own, keeping the valid fields of a bad record for the base values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Set as AbstractSet
from typing import Annotated, Final

from pydantic import AfterValidator, Field, Strict, TypeAdapter, ValidationError, with_config
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict  # pydantic needs it for TypedDict before 3.12

from ingest.wire.base import (
    DEVICE_ID_PATTERN,
    JSON_VALUE,
    METRIC_NAME_PATTERN,
    SENML_RELATIVE_BELOW_S,
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
    malformed,
    quote,
    too_large,
)
from ingest.wire.reasons import Problem, Reason, Reject, first_problem

__all__ = ["parse_senml"]

_SENML_VERSION: Final = 10
_BASE64_URL: Final = re.compile(r"[A-Za-z0-9_-]*").fullmatch


def _base64_data(text: str) -> str:
    """Check that ``text`` is base64 data (RFC 8428: URL-safe alphabet, padding optional)."""
    data = text.rstrip("=")
    padding = len(text) - len(data)
    if (
        not _BASE64_URL(data)
        or len(data) % 4 == 1
        or padding > 2
        or (padding and (len(data) + padding) % 4)
    ):
        raise PydanticCustomError("schema", "is not base64 data (URL-safe alphabet)")
    return text


@with_config({"extra": "allow"})
class _SenMLRecord(TypedDict, total=False):
    bn: String
    bt: Finite
    bu: Unit
    bv: Finite
    bs: Finite
    bver: Annotated[int, Strict(), Field(ge=1)]
    n: String
    u: Unit
    v: Finite
    vs: Text
    vb: Annotated[bool, Strict()]
    vd: Annotated[Text, AfterValidator(_base64_data)]
    s: Finite
    t: Finite
    ut: Finite


_SENML_RECORD: Final = TypeAdapter(_SenMLRecord)
_SENML_PACK: Final = TypeAdapter(list[_SenMLRecord])
_TRACKED_BASES: Final = frozenset({"bn", "bt", "bu", "bv", "bver"})  # bs is ignored
_REGULAR_FIELDS: Final = frozenset({"n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"})
_BASE_FIELDS: Final = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})
_KNOWN_FIELDS: Final = _REGULAR_FIELDS | _BASE_FIELDS
_VALUE_FIELDS: Final = frozenset({"v", "vb", "vs", "vd"})


def parse_senml(
    body: bytes, device_id: str, clock: Clock, limits: Limits, *, gateway: bool = False
) -> Parsed:
    """Validate a SenML pack of ``device_id`` (pydantic, then record by record when invalid).

    A ``gateway``'s records whose base name names another device are that device's.
    """
    try:
        records = _SENML_PACK.validate_json(body)
    except ValidationError:
        return _parse_senml_slowly(body, device_id, clock, limits, gateway=gateway)
    resolver = _SenMLResolver(clock, device_id if gateway else None)
    return too_large(len(records), limits) or collect(
        [resolver.resolve(index, record) for index, record in enumerate(records)],
        len(records),
    )


def _parse_senml_slowly(
    body: bytes, device_id: str, clock: Clock, limits: Limits, *, gateway: bool
) -> Parsed:
    """Validate record by record, keeping the valid fields of bad records for base values."""
    try:
        document = JSON_VALUE.validate_json(body)
    except ValidationError as exc:
        return malformed(exc)
    if not isinstance(document, list):
        detail = "the message must be a SenML pack: a JSON array of records"
        return Parsed([], [Reject(-1, Reason.SCHEMA, detail)], 0)
    oversized = too_large(len(document), limits)
    if oversized is not None:
        return oversized
    resolver = _SenMLResolver(clock, device_id if gateway else None)
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
            problems = [error_problem(error) for error in errors]
            outcomes.append(resolver.reject(index, valid, problems, bad, raw.keys()))
        else:
            outcomes.append(resolver.resolve(index, record))
    return collect(outcomes, len(document))


class _SenMLResolver:
    """Carries base fields forward through a pack and resolves each record (RFC 8428 4.6)."""

    __slots__ = (
        "_broken",
        "_bt",
        "_bu",
        "_bv",
        "_bver",
        "_device",
        "_gateway",
        "_prefix",
        "_separated",
        "clock_at",
    )

    def __init__(self, clock: Clock, gateway: str | None) -> None:
        """``gateway``: the sender's id where it is a gateway, else None."""
        self.clock_at = clock
        self._gateway = gateway
        self._prefix = ""
        self._separated = False
        self._device: str | None = None  # the device the base name names, if it does
        self._bt = 0.0
        self._bu: str | None = None
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
        return Reject(index, *outcome) if isinstance(outcome, Problem) else outcome

    def reject(
        self,
        index: int,
        valid: _SenMLRecord,
        problems: list[Problem],
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
            return Reject(index, *first_problem(problems))
        unknown = bad | self._broken.keys()
        child = self._child() if "bn" not in unknown else None
        metric = self._metric(valid) if unknown.isdisjoint(("n", "bn")) else None
        for named in (child, metric):
            if isinstance(named, Problem):
                return Reject(index, *named)
        known_v = "v" in valid and "bv" not in unknown
        value = self._bv + valid["v"] if known_v else None
        seconds = self._bt + valid.get("t", 0.0) if unknown.isdisjoint(("t", "bt")) else None
        problem = _value_problem(labels, value, seconds)
        return Reject(index, *first_problem([*problems, problem] if problem else problems))

    def _take_bases(self, record: _SenMLRecord) -> None:
        if "bn" in record:
            base_name = record["bn"]
            self._separated = base_name.endswith(("/", ":"))
            self._prefix = "" if self._separated else base_name
            self._device = base_name[:-1] if self._separated else None
            self._broken.pop("bn", None)
        if "bu" in record:
            self._bu = record["bu"]
            self._broken.pop("bu", None)
        if "bt" in record:
            self._bt = record["bt"]
            self._broken.pop("bt", None)
        if "bv" in record:
            self._bv = record["bv"]
            self._broken.pop("bv", None)
        if "bver" in record:
            self._bver = record["bver"]
            self._broken.pop("bver", None)

    def _envelope_problem(self, record: _SenMLRecord, *, reading: bool) -> Problem | None:
        """Problems that forbid reading anything from the record, so they come first."""
        if not _KNOWN_FIELDS.issuperset(record):
            mandatory = [label for label in record if label.endswith("_")]
            if mandatory:
                detail = f"unknown must-understand field {quote(mandatory[0])}"
                return Problem(Reason.SCHEMA, detail)
        if self._bver > _SENML_VERSION and (reading or "bver" in record):
            detail = f"SenML version {self._bver} is newer than {_SENML_VERSION}"
            return Problem(Reason.SCHEMA, detail)
        if reading and self._broken:
            for field in ("bver", "bn", "bt", "bv", "bu"):
                if field in self._broken and (field != "bv" or "v" in record):
                    detail = f"inherits the invalid {field} of record {self._broken[field]}"
                    return Problem(Reason.SCHEMA, detail)
        return None

    def _reading(self, index: int, record: _SenMLRecord) -> Item | Problem:
        """Resolve a record whose envelope is sound, checking in the order of ``_RANK``."""
        child = self._child()
        if isinstance(child, Problem):
            return child
        metric = self._metric(record)
        if isinstance(metric, Problem):
            return metric
        value = self._bv + record["v"] if "v" in record else None
        seconds = self._bt + record.get("t", 0.0)
        problem = _value_problem(record.keys(), value, seconds)
        if problem is not None:
            return problem
        ts = self.clock_at.from_senml(seconds)
        if isinstance(ts, Problem):
            return ts
        unit = record.get("u", self._bu)
        return Item(
            index,
            ts,
            None,
            {} if value is None else {metric: value},
            ts_from_server=seconds < SENML_RELATIVE_BELOW_S,
            typed=None if value is not None else {metric: _typed_value(record)},
            units=None if unit is None else {metric: unit},
            device_id=child,
        )

    def _child(self) -> str | Problem | None:
        """Return the gateway's child that the base name names, if it names one."""
        device = self._device
        if self._gateway is None or device is None or device == self._gateway:
            return None
        if not is_device_id(device):
            detail = f"device {quote(device)} (bn) does not match {DEVICE_ID_PATTERN}"
            return Problem(Reason.INVALID_NAME, detail)
        return device

    def _metric(self, record: _SenMLRecord) -> str | Problem:
        name = record.get("n", "")
        metric = name if self._separated else self._prefix + name
        if is_metric_name(metric):
            return metric
        detail = f"metric name {quote(metric)} (bn + n) does not match {METRIC_NAME_PATTERN}"
        return Problem(Reason.INVALID_NAME, detail)


def _typed_value(record: _SenMLRecord) -> bool | str:
    """Return the boolean, string or data of a record that has exactly one of them."""
    if "vb" in record:
        return record["vb"]
    return record["vs"] if "vs" in record else record["vd"]


def _value_problem(
    labels: AbstractSet[str], value: float | None, seconds: float | None
) -> Problem | None:
    """Check the value fields, and the resolved value and time where they are known."""
    if value is not None and not math.isfinite(value):
        return Problem(Reason.NON_FINITE, "v + bv is not a finite number")
    if seconds is not None and not math.isfinite(seconds):
        return Problem(Reason.NON_FINITE, "t + bt is not a finite number")
    kinds = _VALUE_FIELDS.intersection(labels)
    if len(kinds) == 1:
        return None
    if not kinds and "s" in labels:
        return Problem(Reason.UNSUPPORTED_VALUE, "records with only a sum (s) are not stored")
    found = f"{len(kinds)} value fields" if kinds else "no value field"
    detail = f"the record has {found}; it needs exactly one of v, vb, vs or vd"
    return Problem(Reason.SCHEMA, detail)
