"""Reading routes: raw ranges with keyset pagination, and aggregates per time bucket.

Numbers come from ``readings`` and its rollups, booleans and strings from
``readings_typed`` (:mod:`api.typed_readings`); every answer carries the units the device
gave its metrics.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from aiohttp import web
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from api import buckets, counters, queries, queries_typed, tiers
from api.context import DATABASE, SETTINGS
from api.database import Database
from api.errors import BadRequestError
from api.models import (
    AGGREGATES,
    Aggregate,
    BucketedReadings,
    BucketPoint,
    BucketSeries,
    RawReading,
    RawReadings,
    ReadingsParams,
    ValueType,
)
from api.pagination import decode_cursor, encode_cursor
from api.routes_devices import Metric, device_key, metric_keys
from api.routing import Router
from api.typed_readings import APPLICABLE, raw_page, typed_series

__all__ = ["router", "time_range", "units_of"]

router = Router()

_DEFAULT_SPAN = timedelta(days=1)
# By source, and whether a bucket is exactly one rollup row (then read as stored).
_QUERY = {
    ("raw", False): queries.BUCKETS_FROM_RAW,
    ("rollup_1m", False): queries.BUCKETS_FROM_1M,
    ("rollup_1m", True): queries.BUCKETS_OF_1M,
    ("rollup_1h", False): queries.BUCKETS_FROM_1H,
    ("rollup_1h", True): queries.BUCKETS_OF_1H,
    ("rollup_1d", False): queries.BUCKETS_FROM_1D,
    ("rollup_1d", True): queries.BUCKETS_OF_1D,
}


async def units_of(
    conn: AsyncConnection[TupleRow], device: int, metrics: dict[int, Metric]
) -> dict[int, str]:
    """Return {metric key: unit} of the device's metrics that have a unit."""
    cur = await conn.execute(
        queries_typed.UNITS, {"device_key": device, "metric_keys": list(metrics)}
    )
    return {int(key): str(unit) for key, unit in await cur.fetchall()}


def time_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """Fill in a missing end (now) or start (end - 1 day); 400 unless start < end."""
    end = end or datetime.now(UTC)
    start = start or end - _DEFAULT_SPAN
    if start >= end:
        raise BadRequestError(f"start ({start.isoformat()}) must be before end ({end.isoformat()})")
    return start, end


@router.json(
    "GET",
    "/v1/devices/{device_id}/readings",
    params=ReadingsParams,
    reply=RawReadings | BucketedReadings,
    scope="read",
    tag="readings",
    description="raw readings, or with `bucket`, aggregates per bucket",
)
async def get_readings(
    request: web.Request, params: ReadingsParams
) -> RawReadings | BucketedReadings:
    """Return raw readings page by page, or with `bucket` aggregates per time bucket."""
    start, end = time_range(params.start, params.end)
    settings = request.app[SETTINGS]
    if params.bucket is None:
        if params.limit > settings.api_max_points:
            raise BadRequestError(f"limit: at most {settings.api_max_points}")
        return await _raw(request.app[DATABASE], params, start, end)
    if params.cursor is not None:
        raise BadRequestError("cursor: pages are for raw readings; aggregates come whole")
    seconds = buckets.bucket_seconds(params.bucket)
    buckets.check_points(start, end, seconds, settings.api_max_points)
    return await _bucketed(request.app[DATABASE], params, start, end, seconds)


async def _raw(db: Database, params: ReadingsParams, start: datetime, end: datetime) -> RawReadings:
    after_key, after_time = -1, start - timedelta(microseconds=1)
    if params.cursor is not None:
        key, stamp = decode_cursor(params.cursor, int, str)
        try:
            after_key, after_time = int(str(key)), datetime.fromisoformat(str(stamp))
        except ValueError as exc:
            raise BadRequestError("cursor: not a cursor this API gave out") from exc
    found: list[RawReading] = []
    async with db.connection() as conn:
        key_of = await device_key(conn, params.device_id)
        metrics = await metric_keys(conn, params.metric)
        units = await units_of(conn, key_of, metrics)
        # One index range scan per metric, in key order, until the page is full.
        for metric_key, metric in metrics.items():
            if metric_key < after_key:
                continue
            room = params.limit + 1 - len(found)
            if room <= 0:
                break
            page = {
                "device_key": key_of,
                "metric_key": metric_key,
                "start": start,
                "end": end,
                "after": after_time if metric_key == after_key else start - timedelta(1),
                "limit": room,
            }
            if metric.type != "number":
                found += await raw_page(conn, metric.name, page)
                continue
            cur = await conn.execute(queries.RAW_PAGE, page)
            for ts, value in await cur.fetchall():
                found.append(RawReading(metric=metric.name, ts=ts, value=value))
    next_cursor = None
    if len(found) > params.limit:
        found.pop()
        key_by_name = {metric.name: key for key, metric in metrics.items()}
        next_cursor = encode_cursor(key_by_name[found[-1].metric], found[-1].ts.isoformat())
    return RawReadings(
        device_id=params.device_id,
        start=start,
        end=end,
        readings=found,
        units={metrics[key].name: unit for key, unit in units.items()},
        next_cursor=next_cursor,
    )


async def _bucketed(
    db: Database, params: ReadingsParams, start: datetime, end: datetime, seconds: int
) -> BucketedReadings:
    wanted: list[Aggregate] = [a for a in AGGREGATES if a in params.agg.split(",")]
    async with db.connection() as conn:
        key_of = await device_key(conn, params.device_id)
        metrics = await metric_keys(conn, params.metric)
        kinds = {metric.type for metric in metrics.values()}
        if kinds and not any(APPLICABLE[kind].intersection(wanted) for kind in kinds):
            raise BadRequestError(
                f"agg: {','.join(wanted)} applies to none of the metrics, whose values are"
                f" {' and '.join(sorted(kinds))}: " + _applicable(kinds)
            )
        units = await units_of(conn, key_of, metrics)
        seconds, chosen = tiers.plan_within_retention(
            start,
            end,
            seconds,
            complete_before=await db.rollups_complete_before(conn),
            kept=await tiers.retention(conn),
            now=datetime.now(UTC),
        )
        args = {
            "device_key": key_of,
            "metric_keys": [k for k, m in metrics.items() if m.type == "number"],
            "start": start,
            "end": end,
            "rollup_lo": chosen.rollup_lo,
            "rollup_hi": chosen.rollup_hi,
            "step": timedelta(seconds=seconds),
        }
        series = await _numeric_series(
            conn, chosen=chosen, args=args, metrics=metrics, units=units, wanted=wanted
        )
        for metric_key, metric in metrics.items():
            if metric.type != "number":
                series[metric_key] = await typed_series(
                    conn,
                    (metric.name, metric.type, units.get(metric_key)),
                    wanted,
                    args | {"metric_key": metric_key},
                )
    return BucketedReadings(
        device_id=params.device_id,
        start=start,
        end=end,
        bucket=buckets.bucket_label(seconds),
        bucket_s=seconds,
        agg=wanted,
        source=chosen.source,
        series=[series[key] for key in sorted(series)],
    )


def _applicable(kinds: set[ValueType]) -> str:
    return "; ".join(
        f"{kind} takes {','.join(a for a in AGGREGATES if a in APPLICABLE[kind])}"
        for kind in sorted(kinds)
    )


async def _numeric_series(
    conn: AsyncConnection[TupleRow],
    *,
    chosen: buckets.Plan,
    args: dict[str, Any],
    metrics: dict[int, Metric],
    units: dict[int, str],
    wanted: list[Aggregate],
) -> dict[int, BucketSeries]:
    """Aggregate the numeric metrics per bucket, from the rollups where they serve."""
    if not args["metric_keys"]:
        return {}
    counting = not counters.COUNTER_AGGREGATES.isdisjoint(wanted)
    query = (
        counters.QUERIES[chosen.source]
        if counting
        else _QUERY[chosen.source, chosen.one_row_per_bucket]
    )
    # Binary results: a day of minutes parses in a third of the time text takes.
    rows = await (await conn.execute(query, args, binary=True)).fetchall()
    # Rows come in metric order; each becomes a point holding only the aggregates asked for.
    picked = [(a, AGGREGATES.index(a)) for a in wanted if a in APPLICABLE["number"]]
    points: dict[int, list[BucketPoint]] = {}
    width, start, end = args["step"], args["start"], args["end"]
    for metric_key, ts, count, total, low, high, first, last, *increase in rows:
        values: tuple[Any, ...] = (total / count, low, high, count, total, first, last)
        if counting:
            rate = increase[0] / counters.seconds_inside(ts, width, start, end)
            values += (increase[0], rate)
        point: dict[str, Any] = {"ts": ts}
        for name, i in picked:
            point[name] = values[i]
        points.setdefault(metric_key, []).append(cast("BucketPoint", point))
    # Built from rows of known types: validating 1,440 points again would cost 3 ms.
    return {
        key: BucketSeries.model_construct(
            metric=metrics[key].name, type="number", unit=units.get(key), points=p
        )
        for key, p in points.items()
    }
