"""Readings of booleans and strings: raw pages and aggregates per bucket, states included.

Each aggregate applies to some types (:data:`APPLICABLE`): booleans aggregate as numbers
where asked (``avg`` is the share of true, ``sum`` the number of true readings, ``min`` and
``max`` are false or true); strings have ``count``, ``first``, ``last`` and ``states``, the
seconds spent in each value within each bucket, exact across bucket edges (see
``queries_typed.STATES``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, cast

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from api import queries_typed
from api.models import Aggregate, BucketPoint, BucketSeries, RawReading, ValueType

__all__ = ["APPLICABLE", "raw_page", "typed_series"]

APPLICABLE: Final[dict[ValueType, frozenset[Aggregate]]] = {
    "number": frozenset({"avg", "min", "max", "count", "sum", "first", "last", "increase", "rate"}),
    "boolean": frozenset({"avg", "min", "max", "count", "sum", "first", "last", "states"}),
    "string": frozenset({"count", "first", "last", "states"}),
}


async def raw_page(
    conn: AsyncConnection[TupleRow], name: str, params: dict[str, Any]
) -> list[RawReading]:
    """Return one metric's typed readings of ``params`` (as ``queries.RAW_PAGE`` takes them)."""
    cur = await conn.execute(queries_typed.RAW_PAGE_TYPED, params)
    return [
        RawReading(metric=name, ts=ts, value=flag if flag is not None else text)
        for ts, flag, text in await cur.fetchall()
    ]


async def typed_series(
    conn: AsyncConnection[TupleRow],
    metric: tuple[str, ValueType, str | None],
    wanted: list[Aggregate],
    params: dict[str, Any],
) -> BucketSeries:
    """Aggregate one typed ``metric`` (name, type, unit) per bucket.

    ``params`` name the device, the metric's key, the range and the bucket width (``step``).
    """
    name, kind, unit = metric
    picked = [a for a in wanted if a in APPLICABLE[kind]]
    points: dict[datetime, dict[str, Any]] = {}
    cur = await conn.execute(queries_typed.TYPED_BUCKETS, params, binary=True)
    for row in await cur.fetchall():
        bucket, count, first_b, last_b, first_t, last_t, share, every, some, trues = row
        boolean = kind == "boolean"
        values = {
            "avg": share,
            "min": every,
            "max": some,
            "count": count,
            "sum": float(trues),
            "first": first_b if boolean else first_t,
            "last": last_b if boolean else last_t,
        }
        points[bucket] = {"ts": bucket} | {a: values[a] for a in picked if a in values}
    if "states" in picked:
        until = min(params["end"], datetime.now(UTC))
        cur = await conn.execute(queries_typed.STATES, params | {"until": until}, binary=True)
        for bucket, state, seconds in await cur.fetchall():
            point = points.setdefault(bucket, _empty(bucket, picked))
            point.setdefault("states", {})[state] = seconds
    return BucketSeries.model_construct(
        metric=name,
        type=kind,
        unit=unit,
        points=[cast("BucketPoint", points[b]) for b in sorted(points)],
    )


def _empty(bucket: datetime, picked: list[Aggregate]) -> dict[str, Any]:
    """Start the point of a bucket that a value held over without a reading in it."""
    return {"ts": bucket, "count": 0} if "count" in picked else {"ts": bucket}
