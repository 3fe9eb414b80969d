"""Alert routes: the alerts now and their history (read), acknowledge and silence (admin).

An alert is the state of one rule for one device, kept by the evaluator in the ingest
service (ok, pending, firing, resolved). Acknowledging a firing alert stops its repeated
notifications until it next fires; a silence holds back its notifications until a time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from api import alert_queries as queries
from api.alert_models import (
    Alert,
    AlertEvent,
    AlertHistoryPage,
    AlertList,
    AlertParams,
    AlertsParams,
    HistoryParams,
    SilenceBody,
)
from api.context import DATABASE
from api.errors import BadRequestError, ConflictError, NotFoundError
from api.models import ErrorBody
from api.pagination import decode_cursor, encode_cursor
from api.queries import DEVICE_KEY
from api.routing import Reply, Router

__all__ = ["router"]

router = Router()

_NO_RULE = Reply(404, "no such rule or device", ErrorBody)


def _alert(row: tuple[Any, ...]) -> Alert:
    return Alert(**dict(zip(Alert.model_fields, row[: len(Alert.model_fields)], strict=True)))


@router.json("GET", "/v1/alerts", params=AlertsParams, reply=AlertList, scope="read", tag="alerts")
async def list_alerts(request: web.Request, params: AlertsParams) -> AlertList:
    """List the alerts firing now (or pending), newest first, by severity, device or rule."""
    after: tuple[object, ...] = (None, None, None)
    if params.cursor is not None:
        since, rule_id, device_key = decode_cursor(params.cursor, str, int, int)
        try:
            after = (datetime.fromisoformat(str(since)), rule_id, device_key)
        except ValueError as exc:
            raise BadRequestError("cursor: not a cursor this API gave out") from exc
    async with request.app[DATABASE].connection() as conn:
        cur = await conn.execute(
            queries.ALERTS,
            {
                "state": params.state,
                "severity": params.severity,
                "device_id": params.device_id,
                "rule_id": params.rule_id,
                "after_since": after[0],
                "after_rule": after[1],
                "after_device": after[2],
                "limit": params.limit + 1,
            },
        )
        rows = await cur.fetchall()
        evaluated = await (await conn.execute(queries.EVALUATED_AT)).fetchone()
    alerts = [_alert(row) for row in rows[: params.limit]]
    next_cursor = None
    if len(rows) > params.limit:
        last = rows[params.limit - 1]
        next_cursor = encode_cursor(last[7].isoformat(), last[0], last[-1])
    return AlertList(
        alerts=alerts,
        next_cursor=next_cursor,
        evaluated_at=None if evaluated is None else evaluated[0],
    )


@router.json(
    "GET",
    "/v1/alerts/history",
    params=HistoryParams,
    reply=AlertHistoryPage,
    scope="read",
    tag="alerts",
)
async def alert_history(request: web.Request, params: HistoryParams) -> AlertHistoryPage:
    """List alert events (transitions, acknowledgements, silences), newest first."""
    before = 2**63 - 1 if params.cursor is None else int(str(decode_cursor(params.cursor, int)[0]))
    async with request.app[DATABASE].connection() as conn:
        cur = await conn.execute(
            queries.HISTORY,
            {
                "before": before,
                "rule_id": params.rule_id,
                "device_id": params.device_id,
                "severity": params.severity,
                "event": params.event,
                "start": params.start,
                "end": params.end,
                "limit": params.limit + 1,
            },
        )
        rows = await cur.fetchall()
    names = tuple(AlertEvent.model_fields)
    events = [AlertEvent(**dict(zip(names, row, strict=True))) for row in rows[: params.limit]]
    more = len(rows) > params.limit
    return AlertHistoryPage(
        events=events, next_cursor=encode_cursor(events[-1].event_id) if more else None
    )


async def _device_key(conn: AsyncConnection[TupleRow], params: AlertParams) -> int:
    """Return the key of the alert's device; 404 unless the rule and the device exist."""
    rule = await (await conn.execute(queries.GET_RULE, [params.rule_id])).fetchone()
    if rule is None:
        raise NotFoundError(f"no alert rule {params.rule_id}")
    device = await (await conn.execute(DEVICE_KEY, [params.device_id])).fetchone()
    if device is None:
        raise NotFoundError(f"no device {params.device_id!r}")
    return int(device[0])


async def _current(conn: AsyncConnection[TupleRow], params: AlertParams, key: int) -> Alert | None:
    row = await (await conn.execute(queries.ALERT_BY_KEY, [params.rule_id, key])).fetchone()
    return None if row is None else _alert(row)


@router.json(
    "POST",
    "/v1/alerts/{rule_id}/{device_id}/acknowledge",
    params=AlertParams,
    reply=Alert,
    scope="admin",
    tag="alerts",
    errors=[_NO_RULE, Reply(409, "the alert is not firing", ErrorBody)],
)
async def acknowledge_alert(request: web.Request, params: AlertParams) -> Alert:
    """Acknowledge a firing alert: no repeated notifications until it fires again."""
    async with request.app[DATABASE].connection() as conn, conn.transaction():
        key = await _device_key(conn, params)
        cur = await conn.execute(queries.ACKNOWLEDGE, [params.rule_id, key])
        if cur.rowcount:
            await conn.execute(
                queries.INSERT_EVENT,
                {
                    "event": "acknowledged",
                    "detail": "",
                    "rule_id": params.rule_id,
                    "device_key": key,
                },
            )
        alert = await _current(conn, params, key)
    if alert is None or alert.state != "firing":
        state = "ok" if alert is None else alert.state
        raise ConflictError(
            f"the alert of rule {params.rule_id} for {params.device_id} is {state}, not firing"
        )
    return alert


@router.json_with_body(
    "POST",
    "/v1/alerts/{rule_id}/{device_id}/silence",
    params=AlertParams,
    body=SilenceBody,
    reply=Alert,
    scope="admin",
    tag="alerts",
    errors=[_NO_RULE],
)
async def silence_alert(request: web.Request, params: AlertParams, body: SilenceBody) -> Alert:
    """Hold back an alert's notifications until a time (null lifts the silence).

    Transitions are still recorded; a resolution whose firing was notified is still sent.
    """
    if body.until is not None and body.until <= datetime.now(UTC):
        raise BadRequestError("until: must be in the future (null lifts the silence)")
    detail = "lifted" if body.until is None else f"until {body.until.isoformat()}"
    async with request.app[DATABASE].connection() as conn, conn.transaction():
        key = await _device_key(conn, params)
        await conn.execute(
            queries.SILENCE,
            {"rule_id": params.rule_id, "device_key": key, "until": body.until},
        )
        await conn.execute(
            queries.INSERT_EVENT,
            {"event": "silenced", "detail": detail, "rule_id": params.rule_id, "device_key": key},
        )
        alert = await _current(conn, params, key)
    assert alert is not None
    return alert
