"""Fleet-wide routes: the summary and the dead letters."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from aiohttp import web

from api import queries
from api.context import DATABASE, SETTINGS
from api.models import (
    DeadLetterOut,
    DeadLetterPage,
    Fleet,
    NoParams,
    RejectsParams,
    StatusCounts,
)
from api.pagination import decode_cursor, encode_cursor
from api.routing import Router

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
