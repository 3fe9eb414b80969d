"""Reading routes: raw ranges with keyset pagination, and aggregates per time bucket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from aiohttp import web

from api import buckets, counters, queries, tiers
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
)
from api.pagination import decode_cursor, encode_cursor
from api.routes_devices import device_key, metric_keys
from api.routing import Router

__all__ = ["router", "time_range"]

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
        # One index range scan per metric, in key order, until the page is full.
        for metric_key, name in metrics.items():
            if metric_key < after_key:
                continue
            room = params.limit + 1 - len(found)
            if room <= 0:
                break
            cur = await conn.execute(
                queries.RAW_PAGE,
                {
                    "device_key": key_of,
                    "metric_key": metric_key,
                    "start": start,
                    "end": end,
                    "after": after_time if metric_key == after_key else start - timedelta(1),
                    "limit": room,
                },
            )
            for ts, value in await cur.fetchall():
                found.append(RawReading(metric=name, ts=ts, value=value))
    next_cursor = None
    if len(found) > params.limit:
        found.pop()
        key_by_name = {name: key for key, name in metrics.items()}
        next_cursor = encode_cursor(key_by_name[found[-1].metric], found[-1].ts.isoformat())
    return RawReadings(
        device_id=params.device_id,
        start=start,
        end=end,
        readings=found,
        next_cursor=next_cursor,
    )


async def _bucketed(
    db: Database, params: ReadingsParams, start: datetime, end: datetime, seconds: int
) -> BucketedReadings:
    wanted: list[Aggregate] = [a for a in AGGREGATES if a in params.agg.split(",")]
    async with db.connection() as conn:
        key_of = await device_key(conn, params.device_id)
        metrics = await metric_keys(conn, params.metric)
        seconds, chosen = tiers.plan_within_retention(
            start,
            end,
            seconds,
            complete_before=await db.rollups_complete_before(conn),
            kept=await tiers.retention(conn),
            now=datetime.now(UTC),
        )
        counting = not counters.COUNTER_AGGREGATES.isdisjoint(wanted)
        query = (
            counters.QUERIES[chosen.source]
            if counting
            else _QUERY[chosen.source, chosen.one_row_per_bucket]
        )
        # Binary results: a day of minutes parses in a third of the time text takes.
        cur = await conn.execute(
            query,
            {
                "device_key": key_of,
                "metric_keys": list(metrics),
                "start": start,
                "end": end,
                "rollup_lo": chosen.rollup_lo,
                "rollup_hi": chosen.rollup_hi,
                "step": timedelta(seconds=seconds),
            },
            binary=True,
        )
        rows = await cur.fetchall()
    # Rows come in metric order; each becomes a point holding only the aggregates asked for.
    picked = [AGGREGATES.index(a) for a in wanted]
    series: dict[int, list[BucketPoint]] = {}
    width = timedelta(seconds=seconds)
    for metric_key, ts, count, total, low, high, first, last, *increase in rows:
        values: tuple[Any, ...] = (total / count, low, high, count, total, first, last)
        if counting:
            rate = increase[0] / counters.seconds_inside(ts, width, start, end)
            values += (increase[0], rate)
        point: dict[str, Any] = {"ts": ts}
        for name, i in zip(wanted, picked, strict=True):
            point[name] = values[i]
        series.setdefault(metric_key, []).append(cast("BucketPoint", point))
    return BucketedReadings(
        device_id=params.device_id,
        start=start,
        end=end,
        bucket=buckets.bucket_label(seconds),
        bucket_s=seconds,
        agg=wanted,
        source=chosen.source,
        # Built from rows of known types: validating 1,440 points again would cost 3 ms.
        series=[
            BucketSeries.model_construct(metric=metrics[k], points=p) for k, p in series.items()
        ],
    )
