"""Wire format v1 as the device writes it: one JSON object per sample instant.

``{"ts": "2026-11-21T10:00:00.123456Z", "seq": 42, "values": {"temperature": 21.5}}``;
``device_id`` is left out because the server takes it from the topic or the token, except
in a gateway's reading-set of a child device, which names the child and carries no ``seq``
(the gateway's counter numbers its own messages, not the child's). A value is a finite
number, a boolean or a string.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Union

__all__ = [
    "Value",
    "encode_attributes",
    "encode_batch",
    "encode_reading",
    "format_ts",
    "utc_now_ts",
    "wire_values",
]

#: A reading's value as the wire carries it.
Value = Union[float, bool, str]


def format_ts(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with microseconds and ``Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now_ts() -> str:
    """Return the current wall-clock time, formatted for the wire."""
    return format_ts(datetime.now(timezone.utc))


def wire_values(values: Mapping[str, Value]) -> dict[str, Value]:
    """Keep what the wire format takes: booleans, strings and finite numbers (no NaN)."""
    kept: dict[str, Value] = {}
    for name, value in values.items():
        if isinstance(value, (bool, str)):
            kept[name] = value
        elif math.isfinite(value):
            kept[name] = float(value)
    return kept


def encode_reading(
    ts: str, seq: int, values: Mapping[str, Value], device_id: str | None = None
) -> str:
    """Encode one reading-set as compact ASCII JSON (so characters equal bytes).

    With ``device_id`` (a gateway's child) the set names that device and has no ``seq``.
    """
    body: dict[str, object] = {"ts": ts, "seq": seq, "values": values}
    if device_id is not None:
        body = {"device_id": device_id, "ts": ts, "values": values}
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def encode_attributes(attributes: Mapping[str, object]) -> bytes:
    """Encode what the device reports about itself (``attributes/{device_id}``)."""
    return json.dumps(dict(attributes), separators=(",", ":"), sort_keys=True).encode("ascii")


def encode_batch(bodies: Sequence[str]) -> bytes:
    """Join already-encoded reading-sets into one JSON array message."""
    return ("[" + ",".join(bodies) + "]").encode("ascii")
