"""The aiohttp application of the query API.

Errors are answered as ``{"error": code, "detail": sentence}`` by one middleware, which
also counts requests per route and status. The pool opens on the way up and closes on
the way down (``cleanup_ctx``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
from aiohttp import web

from api import (
    export,
    queries,
    routes_alert_rules,
    routes_alerts,
    routes_device_admin,
    routes_devices,
    routes_fleet,
    routes_readings,
    routes_webhooks,
)
from api.auth import KeyStore
from api.broker import BROKER, BrokerAdmin
from api.console import add_console_routes
from api.context import DATABASE, KEYS, SETTINGS
from api.database import Database
from api.errors import BrokerError, DatabaseUnavailableError, RateLimitedError, RequestError
from api.metrics import METRICS, render
from api.models import Health, NoParams, Readiness
from api.openapi import openapi_document
from api.routing import Endpoint, Reply, Router
from api.settings import ApiSettings, BrokerSettings
from api.version import __version__
from core.errors import one_line
from core.ratelimit import TokenBuckets
from core.settings import DatabaseSettings

__all__ = ["DESCRIPTION", "create_app", "endpoints", "freeze_startup_heap"]

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Devices and their readings: registry, latest values, ranges, aggregates, export;"
    " alert rules, alerts and webhooks."
)
_RETRY_AFTER_S = "2"

service = Router()
_OPENAPI = web.AppKey("openapi", dict[str, object])


@service.json("GET", "/healthz", reply=Health, scope=None, tag="service")
async def healthz(_request: web.Request, _params: NoParams) -> Health:
    """Answer while the process runs."""
    return Health(status="ok")


@service.stream(
    "GET",
    "/readyz",
    replies=[
        Reply(200, "the database answers", Readiness),
        Reply(503, "the database does not answer", Readiness),
    ],
    scope=None,
    tag="service",
)
async def readyz(request: web.Request, _params: NoParams) -> web.StreamResponse:
    """Answer 200 when the database can be reached, 503 otherwise."""
    try:
        async with request.app[DATABASE].connection() as conn:
            await conn.execute(queries.PING)
        checks = {"database": "ok"}
    except (psycopg.Error, DatabaseUnavailableError) as exc:
        checks = {"database": f"unavailable: {one_line(exc)}"}
    ready = checks["database"] == "ok"
    return web.Response(
        body=Readiness(ready=ready, checks=checks).model_dump_json(),
        status=200 if ready else 503,
        content_type="application/json",
    )


@service.stream(
    "GET",
    "/metrics",
    replies=[Reply(200, "Prometheus text exposition", {"type": "string"}, ("text/plain",))],
    scope=None,
    tag="service",
)
async def metrics(_request: web.Request, _params: NoParams) -> web.StreamResponse:
    """Return the Prometheus metrics of this process."""
    return web.Response(body=render(), content_type="text/plain", charset="utf-8")


@service.stream(
    "GET",
    "/v1/openapi.json",
    replies=[Reply(200, "this document", {"type": "object"})],
    scope=None,
    tag="service",
)
async def openapi(request: web.Request, _params: NoParams) -> web.StreamResponse:
    """Return the OpenAPI 3.1 document of this API."""
    return web.json_response(request.app[_OPENAPI])


def endpoints() -> list[Endpoint]:
    """Return every endpoint of the API, in documentation order."""
    return [
        *routes_devices.router.endpoints,
        *routes_device_admin.router.endpoints,
        *routes_readings.router.endpoints,
        *export.router.endpoints,
        *routes_fleet.router.endpoints,
        *routes_alerts.router.endpoints,
        *routes_alert_rules.router.endpoints,
        *routes_webhooks.router.endpoints,
        *service.endpoints,
    ]


def _error(status: int, code: str, detail: str, **headers: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    route = request.match_info.route.name or "unmatched"
    try:
        response = await handler(request)
    except RateLimitedError as exc:
        response = _error(exc.status, exc.code, str(exc), **{"Retry-After": str(exc.retry_after_s)})
    except RequestError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        response = _error(exc.status, exc.code, str(exc), **headers)
    except psycopg.DataError as exc:
        # A value PostgreSQL cannot take (a NUL character, say) is the request's fault.
        response = _error(400, "bad_request", f"the database refused a value: {one_line(exc)}")
    except (DatabaseUnavailableError, psycopg.OperationalError) as exc:
        log.warning("%s: database unavailable: %s", route, one_line(exc))
        response = _error(
            503,
            "unavailable",
            "database unavailable, retry later",
            **{"Retry-After": _RETRY_AFTER_S},
        )
    except BrokerError:
        # Logged where the device is known (api.routes_devices).
        response = _error(
            503,
            "broker_unavailable",
            "the MQTT broker did not confirm the device credentials; nothing was changed,"
            " retry later",
            **{"Retry-After": _RETRY_AFTER_S},
        )
    except web.HTTPException as exc:
        if exc.empty_body:
            raise
        response = _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        response.headers.extend((k, v) for k, v in exc.headers.items() if k != "Content-Type")
    METRICS.requests.labels(route, str(response.status)).inc()
    METRICS.seconds.labels(route).observe(time.perf_counter() - started)
    return response


@web.middleware
async def _body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read a request body within ``API_READ_TIMEOUT_S`` (408 after), before the handler."""
    if request.body_exists:
        timeout_s = request.app[SETTINGS].api_read_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await request.read()  # kept by the request: handlers read it again for free
        except TimeoutError:
            detail = f"the body did not arrive within {timeout_s:g} s (API_READ_TIMEOUT_S)"
            return _error(408, "timeout", detail, Connection="close")
    return await handler(request)


def create_app(
    settings: ApiSettings, database: DatabaseSettings, broker: BrokerSettings | None = None
) -> web.Application:
    """Build the application; the pool is opened when it starts.

    With ``broker.api_broker_admin_url`` set, device credentials are provisioned in the broker.
    """
    app = web.Application(middlewares=[_errors_and_metrics, _body_deadline])
    app[SETTINGS] = settings
    db = Database(
        database.database_url,
        min_size=database.db_pool_min,
        max_size=database.db_pool_max,
        statement_timeout_s=settings.api_statement_timeout_s,
        checkout_timeout_s=settings.api_db_wait_s,
    )
    app[DATABASE] = db
    admin_key = settings.api_admin_key.get_secret_value() if settings.api_admin_key else None
    if broker is not None and broker.api_broker_admin_url is not None:
        app[BROKER] = BrokerAdmin(
            broker.api_broker_admin_url.get_secret_value(), timeout_s=broker.api_broker_timeout_s
        )
    app[KEYS] = KeyStore(
        admin_key, TokenBuckets(settings.api_rate_per_key, settings.api_burst_per_key)
    )
    routes = endpoints()
    app[_OPENAPI] = openapi_document(
        routes, title="Telemetry query API", version=__version__, description=DESCRIPTION
    )
    for endpoint in routes:
        app.router.add_route(endpoint.method, endpoint.path, endpoint.handler, name=endpoint.name)
    add_console_routes(app)  # static files, not API operations: outside the OpenAPI document

    async def pool(app: web.Application) -> AsyncIterator[None]:
        async with app[DATABASE]:
            yield

    app.cleanup_ctx.append(pool)
    return app


def freeze_startup_heap() -> None:
    """Keep the garbage collector from walking what start-up built, before serving.

    Modules, pydantic schemas and routes live as long as the process; without this, every
    full collection walks them again, and such a pause held requests up by 35 to 50 ms.
    """
    gc.collect()
    gc.freeze()
