"""Parsing and validation of telemetry messages: wire format v1 and SenML (RFC 8428, JSON).

This is the ingest server's trust boundary. :func:`parse_topic` checks an MQTT topic and
:func:`parse_payload` turns the raw bytes of a message into accepted :class:`Item` objects
and :class:`Reject` records. It never raises for any input bytes: every problem becomes a
``Reject`` with a stable reason code (:mod:`ingest.wire.reasons`). One bad item never
rejects its neighbours.

Modules: :mod:`~ingest.wire.reasons` (the codes and which one wins),
:mod:`~ingest.wire.base` (names, items, limits, times), :mod:`~ingest.wire.v1` (wire
format v1 and its three parse paths: fast, pydantic, per item), :mod:`~ingest.wire.senml`
and :mod:`~ingest.wire.topics`.
"""

from __future__ import annotations

from datetime import datetime

from ingest.wire.base import (
    DEFAULT_LIMITS,
    DEVICE_ID_PATTERN,
    METRIC_NAME_PATTERN,
    Format,
    Item,
    Limits,
    Parsed,
    Value,
    clock_at,
)
from ingest.wire.reasons import Reason, Reject
from ingest.wire.senml import parse_senml
from ingest.wire.topics import parse_topic
from ingest.wire.v1 import parse_v1

__all__ = [
    "DEVICE_ID_PATTERN",
    "METRIC_NAME_PATTERN",
    "Format",
    "Item",
    "Limits",
    "Parsed",
    "Reason",
    "Reject",
    "Value",
    "parse_payload",
    "parse_topic",
]


def parse_payload(
    body: bytes,
    fmt: Format,
    device_id: str,
    now: datetime,
    limits: Limits = DEFAULT_LIMITS,
    *,
    gateway: bool = False,
) -> Parsed:
    """Validate one message of ``device_id`` (already authenticated), received at ``now``.

    ``now`` must be timezone-aware; it stands in for absent and relative times. A
    ``gateway``'s items may be for other devices (``Item.device_id``); whether those are its
    children is for the intake to check.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    clock = clock_at(now, limits.max_future_skew_s)
    if fmt is Format.SENML:
        return parse_senml(body, device_id, clock, limits, gateway=gateway)
    return parse_v1(body, device_id, clock, limits, gateway=gateway)
