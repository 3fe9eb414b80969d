"""Device registry routes: create, list (by status, text or tags), get, delete, rotate a token.

Also the latest values, of one device or of many.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from aiohttp import web
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from api import queries
from api.broker import BROKER, BrokerAdmin
from api.context import DATABASE, SETTINGS
from api.errors import BadRequestError, BrokerError, ConflictError, NotFoundError
from api.latest_page import read_page
from api.models import (
    CreateDevice,
    Device,
    DeviceCreated,
    DeviceList,
    DeviceParams,
    ErrorBody,
    FleetLatestPage,
    FleetLatestParams,
    LatestValue,
    LatestValues,
    ListDevicesParams,
    NoParams,
    TokenRotated,
    ValueType,
    metric_names,
)
from api.pagination import decode_cursor, encode_cursor
from api.routing import RawJson, Reply, Router
from api.settings import ApiSettings
from api.tags import tag_filter
from core.errors import DeviceExistsError
from core.registry import create_device, rotate_token

__all__ = ["Metric", "device_from_row", "device_key", "metric_keys", "router", "status_params"]

log = logging.getLogger(__name__)

router = Router()


def _broker(request: web.Request) -> BrokerAdmin | None:
    """Return the broker admin when credentials are provisioned (API_BROKER_ADMIN_URL)."""
    return request.app.get(BROKER)


async def _confirm(device_id: str, action: str, change: Awaitable[None]) -> None:
    """Await a broker change; on failure log it by device and let the database roll back."""
    try:
        await change
    except BrokerError as exc:
        log.warning(
            "device %s: the MQTT broker did not confirm its %s (%s); the %s was rolled back:"
            " check that the broker runs and API_BROKER_ADMIN_URL, then retry",
            device_id,
            action,
            exc,
            action,
        )
        raise


def status_params(settings: ApiSettings) -> dict[str, Any]:
    """Return the parameters of a device's status (the API's rule) for a query."""
    return {
        "now": datetime.now(UTC),
        "default_interval_s": settings.api_default_interval_s,
        "offline_after": settings.api_offline_after_intervals,
    }


def device_from_row(row: tuple[Any, ...]) -> Device:
    """Build a device from a row of ``queries.GET_DEVICE``'s columns."""
    return Device(
        device_id=row[1],
        name=row[2],
        metadata=row[3],
        expected_interval_s=row[4],
        created_at=row[5],
        last_seen=row[6],
        last_seq=row[7],
        seq_gaps=row[8],
        status=row[9],
        attributes=row[10],
        attributes_at=row[11],
        gateway=row[12],
        gateway_id=row[13],
    )


async def device_key(conn: AsyncConnection[TupleRow], device_id: str) -> int:
    """Return the key of ``device_id``; NotFoundError when it is not registered."""
    row = await (await conn.execute(queries.DEVICE_KEY, [device_id])).fetchone()
    if row is None:
        raise NotFoundError(f"no device {device_id!r}")
    return int(row[0])


class Metric(NamedTuple):
    """A stored metric: its name and the type of its values."""

    name: str
    type: ValueType


async def metric_keys(conn: AsyncConnection[TupleRow], names: str | None) -> dict[int, Metric]:
    """Return {key: metric} of the metrics in ``a,b`` (all when None), in key order.

    Names never stored are left out: they have no readings.
    """
    if names is None:
        cur = await conn.execute(queries.METRIC_KEYS_ALL)
    else:
        cur = await conn.execute(queries.METRIC_KEYS, [list(metric_names(names))])
    return {int(key): Metric(name, kind) for key, name, kind in await cur.fetchall()}


@router.json_with_body(
    "POST",
    "/v1/devices",
    body=CreateDevice,
    reply=DeviceCreated,
    scope="admin",
    tag="devices",
    status=201,
    description="created; the token is shown this once",
    errors=[Reply(409, "the device id is taken", ErrorBody)],
)
async def post_device(request: web.Request, _params: NoParams, body: CreateDevice) -> DeviceCreated:
    """Register a device and return its token (shown once, stored hashed).

    With broker provisioning on, the device's MQTT credentials are in the broker before
    the registration commits; if the broker does not confirm, nothing is registered.
    """
    broker = _broker(request)
    async with request.app[DATABASE].connection() as conn, conn.transaction():
        try:
            new = await create_device(
                conn,
                body.device_id,
                name=body.name,
                metadata=body.metadata,
                expected_interval_s=body.expected_interval_s,
                gateway=body.gateway,
            )
        except DeviceExistsError as exc:
            raise ConflictError(str(exc)) from exc
        if broker is not None:
            # A client the broker made before failing has a password nobody was shown;
            # registering the id again replaces it.
            await _confirm(
                new.device_id, "registration", broker.put_device(new.device_id, new.token)
            )
    return DeviceCreated(device_id=new.device_id, token=new.token)


@router.json(
    "GET", "/v1/devices", params=ListDevicesParams, reply=DeviceList, scope="read", tag="devices"
)
async def list_devices(request: web.Request, params: ListDevicesParams) -> DeviceList:
    """List devices by id or by `sort`, optionally filtered by status, text or tags.

    Tags (``tag=site:berlin``, repeatable) match the operator's metadata; all must match.
    """
    try:
        tags = tag_filter(params.tag)
    except ValueError as exc:
        raise BadRequestError(str(exc)) from exc
    tagged = bool(tags)
    filters = status_params(request.app[SETTINGS]) | {
        "status": params.status,
        "search": params.search,
        "limit": params.limit + 1,
        "tags": json.dumps(tags),
    }
    if params.sort == "device_id":
        after = "" if params.cursor is None else str(decode_cursor(params.cursor, str)[0])
        query, args = queries.LIST_DEVICES[tagged], filters | {"after": after}
    else:
        after_key = after_id = None
        if params.cursor is not None:
            sort, after_key, after_id = decode_cursor(params.cursor, str, str, str)
            if sort != params.sort:
                raise BadRequestError(f"cursor: a cursor of sort={sort}, not {params.sort}")
        query = queries.LIST_DEVICES_SORTED[params.sort, tagged]
        args = filters | {"after_key": after_key, "after_id": after_id}
    async with request.app[DATABASE].connection() as conn:
        rows = await (await conn.execute(query, args)).fetchall()
    devices = [device_from_row(row) for row in rows[: params.limit]]
    next_cursor = None
    if len(rows) > params.limit:
        last = rows[params.limit - 1]
        next_cursor = (
            encode_cursor(last[1])
            if params.sort == "device_id"
            else encode_cursor(params.sort, last[queries.DEVICE_COLUMNS], last[1])
        )
    return DeviceList(devices=devices, next_cursor=next_cursor)


@router.json(
    "GET", "/v1/devices/{device_id}", params=DeviceParams, reply=Device, scope="read", tag="devices"
)
async def get_device(request: web.Request, params: DeviceParams) -> Device:
    """Return a device with its status (online, offline, never_seen) and when it was last seen."""
    async with request.app[DATABASE].connection() as conn:
        cur = await conn.execute(
            queries.GET_DEVICE,
            status_params(request.app[SETTINGS]) | {"device_id": params.device_id},
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFoundError(f"no device {params.device_id!r}")
    return device_from_row(row)


@router.stream(
    "DELETE",
    "/v1/devices/{device_id}",
    params=DeviceParams,
    replies=[Reply(204, "deleted with its readings", media_types=())],
    scope="admin",
    tag="devices",
)
async def delete_device(request: web.Request, params: DeviceParams) -> web.StreamResponse:
    """Delete a device with its readings, units, latest values and history.

    On plain PostgreSQL its rollup rows go too; a gateway's children are detached.
    """
    db = request.app[DATABASE]
    async with db.connection() as conn, conn.transaction():
        key = await device_key(conn, params.device_id)
        await conn.execute(queries.DELETE_DEVICE_READINGS, [key])
        await conn.execute(queries.DELETE_DEVICE_TYPED, [key])
        # TimescaleDB: materialized aggregates of the device stay until their range is
        # refreshed or expires; device keys are never reused, so nothing can reach them.
        if await db.storage_mode(conn) == "plain":
            await conn.execute(queries.DELETE_DEVICE_ROLLUPS_1M, [key])
            await conn.execute(queries.DELETE_DEVICE_ROLLUPS_1H, [key])
            await conn.execute(queries.DELETE_DEVICE_ROLLUPS_1D, [key])
        await conn.execute(queries.DELETE_DEVICE_LATEST, [key])
        await conn.execute(queries.DELETE_DEVICE, [key])
        broker = _broker(request)
        if broker is not None:
            await _confirm(params.device_id, "deletion", broker.remove_device(params.device_id))
    return web.Response(status=204)


@router.json(
    "POST",
    "/v1/devices/{device_id}/token",
    params=DeviceParams,
    reply=TokenRotated,
    scope="admin",
    tag="devices",
    description="the new token, shown this once",
)
async def rotate_device_token(request: web.Request, params: DeviceParams) -> TokenRotated:
    """Give a device a new token; the old one stops working (in the broker too)."""
    broker = _broker(request)
    async with request.app[DATABASE].connection() as conn, conn.transaction():
        token = await rotate_token(conn, params.device_id)
        if token is None:
            raise NotFoundError(f"no device {params.device_id!r}")
        if broker is not None:
            change = broker.set_device_password(params.device_id, token)
            await _confirm(params.device_id, "token rotation", change)
    return TokenRotated(device_id=params.device_id, token=token)


@router.json(
    "GET",
    "/v1/devices/{device_id}/latest",
    params=DeviceParams,
    reply=LatestValues,
    scope="read",
    tag="readings",
)
async def get_latest(request: web.Request, params: DeviceParams) -> LatestValues:
    """Return the newest value, its time and unit for every metric of a device."""
    async with request.app[DATABASE].connection() as conn:
        key = await device_key(conn, params.device_id)
        cur = await conn.execute(queries.LATEST, {"device_key": key, "metric_keys": None})
        rows = await cur.fetchall()
    return LatestValues(
        device_id=params.device_id,
        values=[
            LatestValue(metric=name, ts=ts, value=_first(number, flag, text), unit=unit)
            for name, ts, number, flag, text, unit in rows
        ],
    )


def _first(number: float | None, flag: bool | None, text: str | None) -> bool | float | str:
    """Return the one of a typed row's value columns that holds its value."""
    if number is not None:
        return number
    return flag if flag is not None else text or ""


@router.json(
    "GET",
    "/v1/latest",
    params=FleetLatestParams,
    reply=FleetLatestPage,
    scope="read",
    tag="readings",
)
async def get_fleet_latest(request: web.Request, params: FleetLatestParams) -> RawJson:
    """Return the newest values of many devices at once, a page of devices at a time.

    Values reported more than ``API_LATEST_WINDOW_S`` before a device's last reading are
    left out (the per-device ``/latest`` has no such window).
    """
    after = "" if params.cursor is None else str(decode_cursor(params.cursor, str)[0])
    window = timedelta(seconds=request.app[SETTINGS].api_latest_window_s)
    db = request.app[DATABASE]
    async with db.connection() as conn, conn.transaction():
        # One snapshot for the page, which large pages share among connections (read_page).
        await conn.execute(queries.BEGIN_SNAPSHOT)
        keys = None if params.metric is None else list(await metric_keys(conn, params.metric))
        page = await read_page(
            db, conn, after=after, limit=params.limit, metric_keys=keys, window=window
        )
    cursor = json.dumps(None if page.next_after is None else encode_cursor(page.next_after))
    return RawJson(f'{{"devices":{page.devices_json},"next_cursor":{cursor}}}'.encode())
