"""Time buckets: parsing widths, counting points, and choosing the table to read.

Buckets are aligned on the Unix epoch. A width that is a whole number of days is served
from the 1-day rollup, of hours from the 1-hour rollup, of minutes from the 1-minute
rollup, anything else from raw readings. A rollup serves only the stretch of the range
made of whole rollup buckets that are complete; the partial head and tail, and on plain
PostgreSQL whatever lies after the refresh watermark, come from raw rows, so both ways give
the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from api.errors import BadRequestError

__all__ = [
    "NICE_BUCKETS_S",
    "Plan",
    "bucket_label",
    "bucket_seconds",
    "check_points",
    "plan",
    "point_count",
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_BUCKET_S = 86_400
#: Widths suggested when a request asks for too many points.
NICE_BUCKETS_S = (1, 5, 10, 15, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
                  86400)  # fmt: skip

Source = Literal["raw", "rollup_1m", "rollup_1h", "rollup_1d"]


def bucket_seconds(text: str) -> int:
    """Return the width of ``30s``, ``5m``, ``1h``, ``1d`` in seconds (1 s to 1 day)."""
    seconds = int(text[:-1]) * _UNITS[text[-1]]
    if not 1 <= seconds <= MAX_BUCKET_S:
        raise BadRequestError(f"bucket: {text} is not between 1s and 1d")
    return seconds


def bucket_label(seconds: int) -> str:
    """Return the shortest spelling of a width: 86400 -> 1d, 300 -> 5m."""
    for unit in ("d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def _epoch_us(t: datetime) -> int:
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def point_count(start: datetime, end: datetime, seconds: int) -> int:
    """Return how many buckets of ``seconds`` the range [start, end) touches."""
    width = seconds * 1_000_000
    return (_epoch_us(end) - 1) // width - _epoch_us(start) // width + 1


def check_points(start: datetime, end: datetime, seconds: int, limit: int) -> None:
    """Raise a 400 that suggests a wider bucket when the range holds over ``limit`` points."""
    points = point_count(start, end, seconds)
    if points <= limit:
        return
    fits = next((s for s in NICE_BUCKETS_S if point_count(start, end, s) <= limit), None)
    advice = (
        f"use bucket={bucket_label(fits)} or wider"
        if fits is not None
        else "narrow the range: even 1d buckets are too many"
    )
    raise BadRequestError(
        f"bucket: {points} points per series is over the limit of {limit}; {advice}"
    )


def _floor(t: datetime, step: timedelta) -> datetime:
    width = int(step.total_seconds()) * 1_000_000
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=_epoch_us(t) // width * width)


def _ceil(t: datetime, step: timedelta) -> datetime:
    floored = _floor(t, step)
    return floored if floored == t else floored + step


@dataclass(frozen=True)
class Plan:
    """Where the buckets of a range come from: rollup rows in [rollup_lo, rollup_hi).

    ``one_row_per_bucket``: the bucket is as wide as the rollup's rows.
    """

    source: Source
    rollup_lo: datetime
    rollup_hi: datetime
    one_row_per_bucket: bool = False


def plan(start: datetime, end: datetime, seconds: int, complete_before: datetime | None) -> Plan:
    """Choose the rollup for a width and the stretch of [start, end) it can serve.

    ``complete_before`` is the plain-path watermark (None: rollups are always complete).
    """
    if seconds % 86400 == 0:
        source: Source = "rollup_1d"
        step = timedelta(days=1)
    elif seconds % 3600 == 0:
        source = "rollup_1h"
        step = timedelta(hours=1)
    elif seconds % 60 == 0:
        source = "rollup_1m"
        step = timedelta(minutes=1)
    else:
        return Plan("raw", start, start)
    lo = _ceil(start, step)
    hi = _floor(end, step)
    if complete_before is not None:
        hi = min(hi, _floor(complete_before, step))
    if hi <= lo:
        return Plan("raw", start, start)
    return Plan(source, lo, hi, one_row_per_bucket=seconds == step.total_seconds())
