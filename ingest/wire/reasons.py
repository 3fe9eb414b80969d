"""Reason codes: why an item or a message was rejected, and which reason wins.

The values are a stable public contract, sent to devices and stored with dead letters
(docs/wire-protocol.md lists them with examples):

- ``malformed_json``: the body is not JSON: bad syntax, invalid UTF-8, nesting deeper than
  about 200 levels, or an integer literal of more than 4300 digits (the parser's limits).
- ``schema``: JSON of the wrong shape: a missing or mistyped field, empty ``values``, a
  ``ts`` that is not RFC 3339 with an offset, a time before 1970 or after 9999, a ``seq``
  that is not an integer from 0 to 2**63 - 1, a SenML record without a value.
- ``invalid_name``: a device id or metric name that does not match its pattern.
- ``device_mismatch``: the payload's ``device_id`` differs from the topic's or token's device.
- ``unknown_device``: the device is not registered (set by the intake, never by the parser).
- ``future_timestamp``: the time is more than ``Limits.max_future_skew_s`` ahead of ``now``.
- ``non_finite``: NaN, Infinity, or a number too large for a float (``1e400``).
- ``unsupported_value``: a SenML record with only a sum (``s``).
- ``too_long``: a string value of more than 256 bytes (UTF-8), or SenML data (``vd``) whose
  base64 text is longer.
- ``too_large``: more items than ``Limits.max_items`` (or, in the intake, too many bytes).
- ``invalid_topic``: an MQTT topic other than ``telemetry/{id}`` or ``telemetry/{id}/senml``.
- ``too_old``: the time is older than the retention period (set by the intake), so it
  would be dropped at once.
- ``type_mismatch``: a value of another type than the metric's (set by the intake): the
  first reading of a metric fixes its type (number, boolean or string).
- ``unit_mismatch``: a unit other than the one the device first gave for the metric (set by
  the intake).
- ``not_a_child``: a gateway's item for a device that is not registered as its child (set
  by the intake); a device that is not a gateway gets ``device_mismatch`` instead.
- ``too_many_metrics``: the item names a metric that is not stored yet, and the metric
  dictionary is full (32,767 names; set by the intake).

An item with several problems gets one reject, with the first reason of: device_mismatch,
invalid_name, non_finite, unsupported_value, too_long, schema, future_timestamp. The
intake's own checks follow, on items the parser accepted, in the order too_old,
too_many_metrics, not_a_child, type_mismatch, unit_mismatch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, NamedTuple

__all__ = ["Problem", "Reason", "Reject", "first_problem"]


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
    TOO_LONG = "too_long"
    TYPE_MISMATCH = "type_mismatch"
    UNIT_MISMATCH = "unit_mismatch"
    NOT_A_CHILD = "not_a_child"
    TOO_MANY_METRICS = "too_many_metrics"


@dataclass(frozen=True, slots=True)
class Reject:
    """One rejected item (``index`` -1: the whole message) with a short ``detail``."""

    index: int
    reason: Reason
    detail: str


class Problem(NamedTuple):
    """A reason and its detail, before it is known which item it belongs to."""

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
            Reason.TOO_LONG,
            Reason.SCHEMA,
            Reason.FUTURE_TIMESTAMP,
        )
    )
}


def first_problem(problems: list[Problem]) -> Problem:
    """Return the problem whose reason ranks first (see the module docstring)."""
    return min(problems, key=lambda problem: _RANK[problem.reason])
