"""Webhook routes (admin): where notifications go, their signing secrets, their deliveries.

A webhook's secret signs every delivery (HMAC-SHA256 of the body, header
``X-Telemetry-Signature``). It is shown once, when the webhook is made or the secret
replaced, and kept in the database as it is, since signing needs it; it is never logged.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from api import alert_queries as queries
from api.context import DATABASE
from api.errors import NotFoundError
from api.models import ErrorBody, NoParams
from api.pagination import decode_cursor, encode_cursor
from api.routing import Reply, Router
from api.webhook_models import (
    DeliveriesParams,
    Delivery,
    DeliveryPage,
    Webhook,
    WebhookBody,
    WebhookCreated,
    WebhookList,
    WebhookParams,
    WebhookSecret,
)

__all__ = ["generate_secret", "router"]

router = Router()

_NO_WEBHOOK = Reply(404, "no such webhook", ErrorBody)
_SECRET_PREFIX = "whsec_"  # noqa: S105  (a prefix that makes leaked secrets easy to scan for)


def generate_secret() -> str:
    """Return a new signing secret with 256 bits of randomness."""
    return _SECRET_PREFIX + secrets.token_urlsafe(32)


def _webhook(row: tuple[Any, ...]) -> Webhook:
    return Webhook(
        webhook_id=row[0],
        name=row[1],
        url=row[2],
        format=row[3],
        enabled=row[4],
        created_at=row[5],
        updated_at=row[6],
        pending=row[7],
        dead=row[8],
    )


async def _get(conn: AsyncConnection[TupleRow], webhook_id: int) -> Webhook:
    row = await (await conn.execute(queries.GET_WEBHOOK, [webhook_id])).fetchone()
    if row is None:
        raise NotFoundError(f"no webhook {webhook_id}")
    return _webhook(row)


@router.json_with_body(
    "POST",
    "/v1/webhooks",
    body=WebhookBody,
    reply=WebhookCreated,
    scope="admin",
    tag="alerts",
    status=201,
    description="created; the secret is shown this once",
)
async def post_webhook(
    request: web.Request, _params: NoParams, body: WebhookBody
) -> WebhookCreated:
    """Add a webhook; every notification from now on is sent to it as well."""
    secret = generate_secret()
    async with request.app[DATABASE].connection() as conn, conn.transaction():
        cur = await conn.execute(queries.INSERT_WEBHOOK, body.model_dump() | {"secret": secret})
        row = await cur.fetchone()
        assert row is not None
        created = await _get(conn, int(row[0]))
    return WebhookCreated(**created.model_dump(), secret=secret)


@router.json("GET", "/v1/webhooks", reply=WebhookList, scope="admin", tag="alerts")
async def list_webhooks(request: web.Request, _params: NoParams) -> WebhookList:
    """List the webhooks with how many notifications wait and how many are dead."""
    async with request.app[DATABASE].connection() as conn:
        rows = await (await conn.execute(queries.LIST_WEBHOOKS)).fetchall()
    return WebhookList(webhooks=[_webhook(row) for row in rows])


@router.json(
    "GET",
    "/v1/webhooks/{webhook_id}",
    params=WebhookParams,
    reply=Webhook,
    scope="admin",
    tag="alerts",
    errors=[_NO_WEBHOOK],
)
async def get_webhook(request: web.Request, params: WebhookParams) -> Webhook:
    """Return a webhook (without its secret)."""
    async with request.app[DATABASE].connection() as conn:
        return await _get(conn, params.webhook_id)


@router.json_with_body(
    "PUT",
    "/v1/webhooks/{webhook_id}",
    params=WebhookParams,
    body=WebhookBody,
    reply=Webhook,
    scope="admin",
    tag="alerts",
    errors=[_NO_WEBHOOK],
)
async def put_webhook(request: web.Request, params: WebhookParams, body: WebhookBody) -> Webhook:
    """Change a webhook's URL, name, format or whether it is enabled (not its secret).

    While disabled, nothing new is queued for it and its queue waits.
    """
    values = body.model_dump() | {"webhook_id": params.webhook_id}
    async with request.app[DATABASE].connection() as conn, conn.transaction():
        await conn.execute(queries.UPDATE_WEBHOOK, values)
        return await _get(conn, params.webhook_id)


@router.json(
    "POST",
    "/v1/webhooks/{webhook_id}/secret",
    params=WebhookParams,
    reply=WebhookSecret,
    scope="admin",
    tag="alerts",
    description="the new secret, shown this once",
    errors=[_NO_WEBHOOK],
)
async def rotate_webhook_secret(request: web.Request, params: WebhookParams) -> WebhookSecret:
    """Give a webhook a new signing secret; deliveries from now on are signed with it."""
    secret = generate_secret()
    async with request.app[DATABASE].connection() as conn:
        cur = await conn.execute(queries.REPLACE_SIGNING_KEY, [secret, params.webhook_id])
    if cur.rowcount == 0:
        raise NotFoundError(f"no webhook {params.webhook_id}")
    return WebhookSecret(webhook_id=params.webhook_id, secret=secret)


@router.stream(
    "DELETE",
    "/v1/webhooks/{webhook_id}",
    params=WebhookParams,
    replies=[Reply(204, "deleted with its queue", None, ())],
    scope="admin",
    tag="alerts",
    errors=[_NO_WEBHOOK],
)
async def delete_webhook(request: web.Request, params: WebhookParams) -> web.StreamResponse:
    """Delete a webhook and the notifications queued for it."""
    async with request.app[DATABASE].connection() as conn:
        cur = await conn.execute(queries.DELETE_WEBHOOK, [params.webhook_id])
    if cur.rowcount == 0:
        raise NotFoundError(f"no webhook {params.webhook_id}")
    return web.Response(status=204)


@router.json(
    "GET",
    "/v1/webhooks/{webhook_id}/deliveries",
    params=DeliveriesParams,
    reply=DeliveryPage,
    scope="admin",
    tag="alerts",
    errors=[_NO_WEBHOOK],
)
async def list_deliveries(request: web.Request, params: DeliveriesParams) -> DeliveryPage:
    """List a webhook's notifications, newest first: pending, delivered or dead."""
    before = 2**63 - 1 if params.cursor is None else int(str(decode_cursor(params.cursor, int)[0]))
    async with request.app[DATABASE].connection() as conn:
        await _get(conn, params.webhook_id)
        cur = await conn.execute(
            queries.DELIVERIES,
            {
                "webhook_id": params.webhook_id,
                "before": before,
                "state": params.state,
                "limit": params.limit + 1,
            },
        )
        rows = await cur.fetchall()
    names = tuple(Delivery.model_fields)
    deliveries = [Delivery(**dict(zip(names, row, strict=True))) for row in rows[: params.limit]]
    more = len(rows) > params.limit
    return DeliveryPage(
        deliveries=deliveries,
        next_cursor=encode_cursor(deliveries[-1].notification_id) if more else None,
    )
