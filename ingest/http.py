"""HTTP intake: ``POST /v1/telemetry``, ``PUT /v1/attributes``, health and metrics endpoints.

A response is sent only after the readings it reports are committed. Status codes:
200 with per-item results; 400 malformed body (named, and dead-lettered); 401 missing or
unknown token; 413 body over ``HTTP_MAX_BODY_BYTES`` (after gzip decoding); 415 content
type; 429 per-device rate limit; 503 database unavailable or queue full. 429 and 503 carry
``Retry-After``. A body that has not fully arrived ``HTTP_READ_TIMEOUT_S`` after the
handler started reading it is answered 408 and the connection closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from aiohttp import web

from core.errors import one_line
from core.ratelimit import TokenBuckets
from core.registry import DeviceRef
from ingest.devices import Lender
from ingest.errors import OverloadedError, StorageDataError, StorageError, StorageUnavailableError
from ingest.intake import Intake, accept, answer, refuse
from ingest.metrics import METRICS, render
from ingest.pipeline import Outcome, Submission
from ingest.records import AttributeReport
from ingest.settings import HttpSettings
from ingest.wire import Format, Reason, Reject
from ingest.wire.attributes import parse_attributes

__all__ = [
    "HTTP",
    "MQTT_READINESS",
    "HttpIntake",
    "Problem",
    "Readiness",
    "problem_middleware",
    "routes",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

_CONTENT_TYPES = {
    "application/json": Format.JSON,
    "application/senml+json": Format.SENML,
}
_RETRY_AFTER_S = "2"
_RECEIVED_HTTP = METRICS.received.labels("http")


@dataclass(frozen=True, slots=True)
class HttpIntake:
    """What the HTTP handlers of a worker share; built once per process."""

    intake: Intake
    settings: HttpSettings
    rate_limits: TokenBuckets
    lend: Lender  # a database connection, for the readiness check


HTTP = web.AppKey("http_intake", HttpIntake)


class Readiness(Protocol):
    """Says where the worker's MQTT intake stands: "ok" when it takes messages."""

    def __call__(self) -> str:
        """Return "ok", or the state that keeps it from taking messages."""
        ...


#: Where MQTT is on, the worker's MQTT readiness (for ``/readyz``).
MQTT_READINESS = web.AppKey("mqtt_readiness", Readiness)


class Problem(Exception):  # noqa: N818  (an HTTP answer, not a failure of ours)
    """An error answer: raised anywhere in a handler, rendered by :func:`problem_middleware`."""

    def __init__(self, status: int, code: str, detail: str, **headers: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render :class:`Problem` as ``{"error": code, "detail": ...}`` with its status."""
    try:
        return await handler(request)
    except Problem as problem:
        return web.json_response(
            {"error": problem.code, "detail": problem.detail},
            status=problem.status,
            headers=problem.headers,
        )


def _unavailable(detail: str) -> Problem:
    return Problem(503, "unavailable", detail, **{"Retry-After": _RETRY_AFTER_S})


async def _authenticate(request: web.Request, intake: Intake) -> DeviceRef:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    challenge = {"WWW-Authenticate": "Bearer"}
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "unauthorized", "send Authorization: Bearer <device token>", **challenge)
    try:
        ref = await intake.devices.by_token(token.strip())
    except StorageError as exc:
        log.warning("token lookup failed, database unavailable: %s", one_line(exc))
        raise _unavailable("database unavailable, retry later") from exc
    if ref is None:
        raise Problem(401, "unauthorized", "unknown device token", **challenge)
    return ref


async def _read_body(request: web.Request, http: HttpIntake) -> bytes:
    timeout_s = http.settings.http_read_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError as exc:
        # A client that stalls mid-body would otherwise hold a connection and a task forever.
        raise Problem(
            408,
            "timeout",
            f"the body did not arrive within {timeout_s:g} s (HTTP_READ_TIMEOUT_S)",
            Connection="close",
        ) from exc
    except web.HTTPRequestEntityTooLarge as exc:
        METRICS.rejected.labels("http", Reason.TOO_LARGE.value).inc()
        raise Problem(
            413,
            Reason.TOO_LARGE.value,
            f"body over {http.settings.http_max_body_bytes} bytes (after decoding)",
        ) from exc


@routes.post("/v1/telemetry")
async def post_telemetry(request: web.Request) -> web.Response:
    """Store the readings of one device; answer after commit with per-item results."""
    http = request.app[HTTP]
    intake = http.intake
    _RECEIVED_HTTP.inc()
    device = await _authenticate(request, intake)
    fmt = _CONTENT_TYPES.get(request.content_type)
    if fmt is None:
        raise Problem(
            415,
            "unsupported_media_type",
            "send application/json (wire format v1) or application/senml+json",
        )
    wait_s = http.rate_limits.take(device.device_key)
    if wait_s:
        raise Problem(
            429,
            "rate_limited",
            f"device {device.device_id} is over its request rate",
            **{"Retry-After": str(max(1, round(wait_s + 0.5)))},
        )
    body = await _read_body(request, http)
    sub = Submission(datetime.now(UTC))
    try:
        # Types, units and a gateway's children may need a look-up the first time.
        verdict = await accept(sub, body, fmt, device, source="http", intake=intake)
    except StorageError as exc:
        raise _unavailable("database unavailable, retry later") from exc
    if verdict.whole is not None:
        await _commit_quietly(intake, sub)
        raise Problem(400, verdict.whole.reason.value, verdict.whole.detail)
    outcome = await _commit(intake, sub, device)
    return web.json_response(answer(outcome.accepted, outcome.duplicates, verdict.rejects))


@routes.put("/v1/attributes")
async def put_attributes(request: web.Request) -> web.Response:
    """Store what the device reports about itself (replacing its last report); 204 on commit."""
    http = request.app[HTTP]
    intake = http.intake
    device = await _authenticate(request, intake)
    if request.content_type != "application/json":
        raise Problem(415, "unsupported_media_type", "send application/json")
    body = await _read_body(request, http)
    sub = Submission(datetime.now(UTC))
    report = parse_attributes(body)
    if isinstance(report, Reject):
        refuse(sub, report.reason, report.detail, body, source="http", device_id=device.device_id)
        await _commit_quietly(intake, sub)
        status = 413 if report.reason is Reason.TOO_LARGE else 400
        raise Problem(status, report.reason.value, report.detail)
    sub.attributes.append(AttributeReport(device.device_key, report, sub.received_at))
    await _commit(intake, sub, device)
    return web.Response(status=204)


async def _commit(intake: Intake, sub: Submission, device: DeviceRef) -> Outcome:
    """Submit ``sub`` and wait for its commit; push back or fail as the HTTP answer says."""
    try:
        intake.pipeline.submit_nowait(sub)
        return await sub.future
    except (OverloadedError, StorageUnavailableError) as exc:
        raise _unavailable(one_line(exc)) from exc
    except StorageDataError as exc:
        log.exception("device %s: batch rejected by the database", device.device_id)
        raise Problem(500, "storage_error", "the database rejected the batch") from exc


async def _commit_quietly(intake: Intake, sub: Submission) -> None:
    """Store a dead letter for a message refused whole; the answer does not depend on it."""
    try:
        intake.pipeline.submit_nowait(sub)
        await sub.future
    except (OverloadedError, StorageError) as exc:
        log.warning("dead letter not stored: %s", one_line(exc))


@routes.get("/healthz")
async def healthz(_request: web.Request) -> web.Response:
    """Answer while the process runs."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Answer 200 when the database (and the broker, where MQTT is on) can be reached."""
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(2), request.app[HTTP].lend() as conn:
            await conn.execute("SELECT 1")
        checks["database"] = "ok"
    except (StorageError, TimeoutError) as exc:
        checks["database"] = f"unavailable: {one_line(exc)}"
    mqtt = request.app.get(MQTT_READINESS)
    if mqtt is not None:
        checks["mqtt"] = mqtt()
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


@routes.get("/metrics")
async def metrics(_request: web.Request) -> web.Response:
    """Prometheus exposition of this service (all workers)."""
    return web.Response(
        body=render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )
