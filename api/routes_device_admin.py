"""Changing devices: merge patches with their history, and the children of gateways.

``PATCH /v1/devices/{id}`` applies a JSON merge patch (RFC 7396) to the name, the expected
interval, the gateway flag and the metadata, under a row lock, and records the patch with
the key that sent it. A gateway may send readings for the devices attached to it; a device
is attached to at most one gateway, and a gateway is nobody's child. The ingest caches who
is whose child (see ``ingest.devices``): an attachment takes effect there within seconds.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from api import queries, queries_devices
from api.context import DATABASE, SETTINGS
from api.errors import ConflictError, NotFoundError
from api.merge_patch import merge_patch
from api.models import Device, DeviceParams, ErrorBody
from api.models_devices import (
    ChangesParams,
    ChildParams,
    Children,
    DeviceChange,
    DeviceChanges,
    PatchDevice,
)
from api.pagination import decode_cursor, encode_cursor
from api.routes_devices import device_from_row, device_key, status_params
from api.routing import PRINCIPAL, Reply, Router

__all__ = ["router"]

router = Router()

_CONFLICT = [Reply(409, "the change contradicts how gateways and children are attached", ErrorBody)]


@router.json_with_body(
    "PATCH",
    "/v1/devices/{device_id}",
    params=DeviceParams,
    body=PatchDevice,
    reply=Device,
    scope="admin",
    tag="devices",
    description="the device as changed",
    errors=_CONFLICT,
)
async def patch_device(request: web.Request, params: DeviceParams, body: PatchDevice) -> Device:
    """Change a device's name, expected interval, gateway flag or metadata (a merge patch).

    Members left out stay; null removes. The patch is recorded with the key that sent it.
    """
    patch = body.model_dump(include=body.model_fields_set)
    async with request.app[DATABASE].connection() as conn, conn.transaction():
        row = await (await conn.execute(queries_devices.LOCK_DEVICE, [params.device_id])).fetchone()
        if row is None:
            raise NotFoundError(f"no device {params.device_id!r}")
        key, name, metadata, interval_s, gateway, parent = row
        changed = {
            "name": patch.get("name", name),
            "expected_interval_s": patch.get("expected_interval_s", interval_s),
            # A null removes the member: the whole metadata, whose absence is {}.
            "metadata": merge_patch(metadata, patch.get("metadata", {})) or {},
            "gateway": bool(patch.get("gateway", gateway)),
        }
        await _check_gateway_change(conn, params.device_id, key, changed["gateway"], parent)
        if patch:
            await conn.execute(
                queries_devices.UPDATE_DEVICE,
                [
                    changed["name"],
                    json.dumps(changed["metadata"]),
                    changed["expected_interval_s"],
                    changed["gateway"],
                    key,
                ],
            )
            principal = request[PRINCIPAL]
            await conn.execute(
                queries_devices.INSERT_CHANGE, [key, principal.key_id, json.dumps(patch)]
            )
        cur = await conn.execute(
            queries.GET_DEVICE,
            status_params(request.app[SETTINGS]) | {"device_id": params.device_id},
        )
        updated = await cur.fetchone()
    assert updated is not None
    return device_from_row(updated)


async def _check_gateway_change(
    conn: AsyncConnection[TupleRow], device_id: str, key: int, gateway: bool, parent: str | None
) -> None:
    """409 when a child would become a gateway, or a gateway with children would stop."""
    if gateway and parent is not None:
        raise ConflictError(
            f"device {device_id!r} is attached to gateway {parent!r}: detach it first"
        )
    if not gateway:
        row = await (await conn.execute(queries_devices.HAS_CHILDREN, [key])).fetchone()
        if row is not None and row[0]:
            raise ConflictError(
                f"device {device_id!r} has children: detach them before it stops being a gateway"
            )


@router.json(
    "GET",
    "/v1/devices/{device_id}/changes",
    params=ChangesParams,
    reply=DeviceChanges,
    scope="admin",
    tag="devices",
)
async def list_changes(request: web.Request, params: ChangesParams) -> DeviceChanges:
    """List the changes made to a device through the API, newest first: what, who, when."""
    before = 2**63 - 1 if params.cursor is None else int(str(decode_cursor(params.cursor, int)[0]))
    async with request.app[DATABASE].connection() as conn:
        key = await device_key(conn, params.device_id)
        cur = await conn.execute(
            queries_devices.CHANGES,
            {"device_key": key, "before": before, "limit": params.limit + 1},
        )
        rows = await cur.fetchall()
    changes = [
        DeviceChange(changed_at=at, key_id=key_id, change=change)
        for _, at, key_id, change in rows[: params.limit]
    ]
    more = len(rows) > params.limit
    return DeviceChanges(
        device_id=params.device_id,
        changes=changes,
        next_cursor=encode_cursor(rows[params.limit - 1][0]) if more else None,
    )


@router.json(
    "GET",
    "/v1/devices/{device_id}/children",
    params=DeviceParams,
    reply=Children,
    scope="read",
    tag="devices",
)
async def list_children(request: web.Request, params: DeviceParams) -> Children:
    """List the devices attached to a gateway."""
    async with request.app[DATABASE].connection() as conn:
        key = await device_key(conn, params.device_id)
        cur = await conn.execute(queries_devices.CHILDREN, [key])
        children = [str(row[0]) for row in await cur.fetchall()]
    return Children(gateway_id=params.device_id, children=children)


@router.stream(
    "PUT",
    "/v1/devices/{device_id}/children/{child_id}",
    params=ChildParams,
    replies=[Reply(204, "attached (or already so)", media_types=())],
    scope="admin",
    tag="devices",
    errors=_CONFLICT,
)
async def attach_child(request: web.Request, params: ChildParams) -> web.StreamResponse:
    """Attach a device to a gateway, which may then send its readings."""
    async with request.app[DATABASE].connection() as conn, conn.transaction():
        gateway, child = await _lock_pair(conn, params)
        if not gateway["gateway"]:
            raise ConflictError(
                f"device {params.device_id!r} is not a gateway"
                ' (PATCH it with {"gateway": true} first)'
            )
        if child["gateway"]:
            raise ConflictError(
                f"device {params.child_id!r} is a gateway: gateways are no children"
            )
        if child["gateway_key"] not in (None, gateway["device_key"]):
            raise ConflictError(
                f"device {params.child_id!r} is attached to another gateway: detach it first"
            )
        await conn.execute(queries_devices.ATTACH, [gateway["device_key"], child["device_key"]])
    return web.Response(status=204)


@router.stream(
    "DELETE",
    "/v1/devices/{device_id}/children/{child_id}",
    params=ChildParams,
    replies=[Reply(204, "detached", media_types=())],
    scope="admin",
    tag="devices",
)
async def detach_child(request: web.Request, params: ChildParams) -> web.StreamResponse:
    """Detach a device from its gateway; 404 when it is not attached to that one."""
    async with request.app[DATABASE].connection() as conn, conn.transaction():
        gateway, child = await _lock_pair(conn, params)
        cur = await conn.execute(
            queries_devices.DETACH, [child["device_key"], gateway["device_key"]]
        )
        if cur.rowcount != 1:
            raise NotFoundError(
                f"device {params.child_id!r} is not attached to {params.device_id!r}"
            )
    return web.Response(status=204)


async def _lock_pair(
    conn: AsyncConnection[TupleRow], params: ChildParams
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Lock the gateway and the child (in key order); 404 naming whichever is missing."""
    cur = await conn.execute(queries_devices.LOCK_DEVICES, [[params.device_id, params.child_id]])
    found = {
        row[1]: {"device_key": row[0], "gateway": row[2], "gateway_key": row[3]}
        for row in await cur.fetchall()
    }
    for device_id in (params.device_id, params.child_id):
        if device_id not in found:
            raise NotFoundError(f"no device {device_id!r}")
    return found[params.device_id], found[params.child_id]
