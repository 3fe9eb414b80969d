"""Fleet-wide routes: the summary, aggregates across devices selected by tags, dead letters."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from aiohttp import web

from api import buckets, queries, queries_fleet
from api.context import DATABASE, SETTINGS
from api.errors import BadRequestError
from api.models import (
    DeadLetterOut,
    DeadLetterPage,
    Fleet,
    NoParams,
    RejectsParams,
    StatusCounts,
)
from api.models_fleet import (
    FLEET_AGGREGATES,
    AggregateParams,
    FleetAggregates,
    FleetGroup,
    FleetPoint,
)
from api.pagination import decode_cursor, encode_cursor
from api.routes_readings import time_range
from api.routing import Router
from api.tags import tag_filter

__all__ = ["router"]

router = Router()


@router.json("GET", "/v1/fleet", reply=Fleet, scope="read", tag="fleet")
async def get_fleet(request: web.Request, _params: NoParams) -> Fleet:
    """Count devices by status and readings stored for the last minute and hour."""
    settings = request.app[SETTINGS]
    now = datetime.now(UTC)
    async with request.app[DATABASE].connection() as conn:
        cur = await conn.execute(
            queries.FLEET_STATUS,
            {
                "now": now,
                "default_interval_s": settings.api_default_interval_s,
                "offline_after": settings.api_offline_after_intervals,
            },
        )
        counts = await cur.fetchone()
        cur = await conn.execute(
            queries.FLEET_READINGS,
            {
                "now": now,
                "minute_ago": now - timedelta(minutes=1),
                "hour_ago": now - timedelta(hours=1),
            },
        )
        recent = await cur.fetchone()
    assert counts is not None
    assert recent is not None
    return Fleet(
        devices=StatusCounts(
            total=counts[0], online=counts[1], offline=counts[2], never_seen=counts[3]
        ),
        readings_last_minute=recent[0],
        readings_last_hour=recent[1],
    )


@router.json(
    "GET", "/v1/rejects", params=RejectsParams, reply=DeadLetterPage, scope="admin", tag="fleet"
)
async def list_rejects(request: web.Request, params: RejectsParams) -> DeadLetterPage:
    """List dead letters, newest first, filtered by device, reason, source and time."""
    before = 2**63 - 1 if params.cursor is None else int(str(decode_cursor(params.cursor, int)[0]))
    async with request.app[DATABASE].connection() as conn:
        cur = await conn.execute(
            queries.REJECTS,
            {
                "before": before,
                "device_id": params.device_id,
                "reason": params.reason,
                "source": params.source,
                "start": params.start,
                "end": params.end,
                "limit": params.limit + 1,
            },
        )
        rows = await cur.fetchall()
    letters = [
        DeadLetterOut(
            id=row[0],
            received_at=row[1],
            source=row[2],
            device_id=row[3],
            item_index=row[4],
            reason=row[5],
            detail=row[6],
            payload=bytes(row[7]).decode("utf-8", errors="replace"),
            payload_base64=base64.b64encode(bytes(row[7])).decode(),
        )
        for row in rows[: params.limit]
    ]
    more = len(rows) > params.limit
    return DeadLetterPage(
        dead_letters=letters, next_cursor=encode_cursor(letters[-1].id) if more else None
    )


@router.json(
    "GET",
    "/v1/aggregate",
    params=AggregateParams,
    reply=FleetAggregates,
    scope="read",
    tag="fleet",
    description="per-bucket aggregates across the devices, by group",
)
async def get_aggregate(request: web.Request, params: AggregateParams) -> FleetAggregates:
    """Aggregate one metric per bucket across the devices whose metadata matches the tags.

    Optionally one series per value of a metadata key (``group_by``); read from the rollups.
    """
    start, end = time_range(params.start, params.end)
    try:
        tags = tag_filter(params.tag)
    except ValueError as exc:
        raise BadRequestError(str(exc)) from exc
    seconds = buckets.bucket_seconds(params.bucket)
    buckets.check_points(start, end, seconds, request.app[SETTINGS].api_max_points)
    wanted = [a for a in FLEET_AGGREGATES if a in params.agg.split(",")]
    db = request.app[DATABASE]
    args: dict[str, Any] = {
        "tags": json.dumps(tags),
        "group_by": params.group_by,
        "start": start,
        "end": end,
        "step": timedelta(seconds=seconds),
    }
    async with db.connection() as conn:
        metric = await (await conn.execute(queries_fleet.METRIC, [params.metric])).fetchone()
        if metric is not None and metric[1] != "number":
            raise BadRequestError(
                f"metric: {params.metric} holds {metric[1]} values; across devices only"
                " numbers aggregate (ask each device for its buckets)"
            )
        args["metric_key"] = None if metric is None else metric[0]
        cur = await conn.execute(queries_fleet.FLEET_SELECTION[bool(tags)], args)
        selection = {row[0]: (int(row[1]), list(row[2])) for row in await cur.fetchall()}
        units = sorted({unit for _, group_units in selection.values() for unit in group_units})
        if len(units) > 1:
            raise BadRequestError(
                f"metric: the selected devices report {params.metric} in {len(units)} units"
                f" ({', '.join(units)}); narrow the selection with tags so that they agree"
            )
        chosen = buckets.plan(start, end, seconds, await db.rollups_complete_before(conn))
        rows = []
        if metric is not None:
            args |= {"rollup_lo": chosen.rollup_lo, "rollup_hi": chosen.rollup_hi}
            statement = queries_fleet.FLEET_BUCKETS[chosen.source, bool(tags)]
            rows = await (await conn.execute(statement, args, binary=True)).fetchall()
    points: dict[str | None, list[FleetPoint]] = {group: [] for group in selection}
    for group, ts, count, total, low, high in rows:
        values = {"avg": total / count, "min": low, "max": high, "count": count, "sum": total}
        point = {"ts": ts} | {a: values[a] for a in wanted}
        # A device whose metadata changed between the two reads may bring its own group.
        points.setdefault(group, []).append(cast("FleetPoint", point))
    ordered = sorted(points, key=lambda group: (group is None, group or ""))
    return FleetAggregates(
        metric=params.metric,
        unit=units[0] if units else None,
        tags=tags,
        group_by=params.group_by,
        start=start,
        end=end,
        bucket=buckets.bucket_label(seconds),
        bucket_s=seconds,
        agg=wanted,
        source=chosen.source,
        devices=sum(devices for devices, _ in selection.values()),
        groups=[
            FleetGroup.model_construct(
                group=group, devices=selection.get(group, (0, []))[0], points=points[group]
            )
            for group in ordered
        ],
    )
