"""Wire format v1 as the device writes it: one JSON object per sample instant.

``{"ts": "2026-11-21T10:00:00.123456Z", "seq": 42, "values": {"temperature": 21.5}}``;
``device_id`` is left out because the server takes it from the topic or the token.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

__all__ = ["encode_batch", "encode_reading", "finite_values", "format_ts", "utc_now_ts"]


def format_ts(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with microseconds and ``Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now_ts() -> str:
    """Return the current wall-clock time, formatted for the wire."""
    return format_ts(datetime.now(timezone.utc))


def finite_values(values: Mapping[str, float]) -> dict[str, float]:
    """Keep the finite numbers only: the wire format has no NaN or infinity."""
    return {name: float(v) for name, v in values.items() if math.isfinite(v)}


def encode_reading(ts: str, seq: int, values: Mapping[str, float]) -> str:
    """Encode one reading-set as compact ASCII JSON (so characters equal bytes)."""
    return json.dumps(
        {"ts": ts, "seq": seq, "values": values}, separators=(",", ":"), allow_nan=False
    )


def encode_batch(bodies: Sequence[str]) -> bytes:
    """Join already-encoded reading-sets into one JSON array message."""
    return ("[" + ",".join(bodies) + "]").encode("ascii")
