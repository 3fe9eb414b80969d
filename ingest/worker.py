"""One ingest worker: HTTP intake, MQTT intake, the pipeline, the writer and scheduled jobs.

Resources come up in ``cleanup_ctx`` order and go down in reverse::

    storage   BatchWriter → Pipeline → Intake (shared by both protocols) → HTTP handlers
    mqtt      by the worker's MQTT role (WorkerConfig.mqtt_role):
              receiver  MqttConsumer → Dispatcher → MqttIntake of what it keeps
              helper    HandoffClient + ReceiptPublisher → MqttIntake
              shared    MqttConsumer → MqttIntake (a member of a shared subscription)
    jobs      StorageJobs (worker 0)
    alerts    AlertService (worker 0; evaluates while it holds the lock, see ingest.alerts)

On the way down MQTT intake stops taking messages first, the pipeline drains so that the
last acknowledgements leave, then the broker connection closes; the pipeline and the
database pool close last.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psycopg
from aiohttp import web
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    stop_after_delay,
    wait_fixed,
)

from core import paho_speedups
from core.errors import ConfigError, one_line
from core.ratelimit import TokenBuckets
from core.settings import DatabaseSettings
from ingest.alerts import AlertService
from ingest.catalog import Catalog
from ingest.devices import DeviceDirectory
from ingest.handoff import Dispatcher, HandoffClient
from ingest.http import HTTP, MQTT_READINESS, HttpIntake, problem_middleware, routes
from ingest.intake import Intake, IntakeRules
from ingest.jobs import StorageJobs
from ingest.migrate import MIGRATIONS, ResolvedMode, schema_state
from ingest.mqtt import MqttConsumer
from ingest.mqtt_intake import MqttIntake
from ingest.pipeline import Pipeline, PipelineSettings
from ingest.receipts import NoReceipts, ReceiptPublisher, ReceiptSender
from ingest.settings import (
    AlertSettings,
    HttpSettings,
    IntakeSettings,
    MqttSettings,
    ServeSettings,
    StorageSettings,
)
from ingest.wire import Limits
from ingest.writer import BatchWriter

__all__ = ["MqttRole", "WorkerConfig", "create_app", "run_worker"]

#: How a worker takes part in MQTT intake (see :attr:`WorkerConfig.mqtt_role`).
MqttRole = Literal["off", "receiver", "helper", "shared"]

log = logging.getLogger(__name__)

_STARTUP_WAIT_S = 60.0
_STARTUP_RETRY_S = 2.0


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker process is configured with."""

    db: DatabaseSettings
    storage: StorageSettings
    http: HttpSettings
    mqtt: MqttSettings
    intake: IntakeSettings
    serve: ServeSettings
    worker_index: int = 0
    handoff_socket: Path | None = None
    alerts: AlertSettings = field(default_factory=AlertSettings)

    @property
    def mqtt_role(self) -> MqttRole:
        """How this worker takes part in MQTT intake.

        ``MQTT_URL=none``: off. With a plain subscription (``MQTT_SHARE_GROUP=""``, the
        default) every subscriber gets every message, so worker 0 holds it (``receiver``)
        and hands messages to the other workers (``helper``) over ``handoff_socket``
        (:mod:`ingest.handoff`). With a share group, every worker is a member (``shared``).
        """
        if self.mqtt.mqtt_url.strip().lower() in ("", "none", "off"):
            return "off"
        if self.mqtt.mqtt_share_group:
            return "shared"
        return "receiver" if self.worker_index == 0 else "helper"

    @property
    def client_id(self) -> str:
        """MQTT client id: stable per worker, so its session survives restarts."""
        prefix = self.mqtt.mqtt_client_id or f"ingest-{socket.gethostname()}"
        return f"{prefix}-{self.worker_index}"


async def _storage_mode(url: str) -> ResolvedMode:
    """Read the storage path from the database, waiting for it to come up."""

    def not_yet(state: RetryCallState) -> None:
        cause = state.outcome.exception() if state.outcome is not None else None
        log.warning("database not reachable yet (%s); retrying", one_line(cause or TimeoutError()))

    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(psycopg.OperationalError),
            stop=stop_after_delay(_STARTUP_WAIT_S),
            wait=wait_fixed(_STARTUP_RETRY_S),
            before_sleep=not_yet,
        ):
            with attempt:
                async with await psycopg.AsyncConnection.connect(url, connect_timeout=5) as conn:
                    version, mode = await schema_state(conn)
    except RetryError as exc:
        cause = exc.last_attempt.exception()
        reason = one_line(cause) if cause is not None else "no answer"
        raise ConfigError(f"database unreachable at start-up: {reason}") from cause
    if mode is None or version < MIGRATIONS[-1][0]:
        raise ConfigError(
            f"database schema is at version {version}, not {MIGRATIONS[-1][0]}: "
            "run `python -m ingest migrate` first"
        )
    return mode


_WRITER = web.AppKey("writer", BatchWriter)


def _worker_zero(config: WorkerConfig) -> Callable[[web.Application], AsyncIterator[None]]:
    """Return the cleanup context of what worker 0 alone runs: storage jobs, alerts."""

    async def worker_zero(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if config.worker_index == 0:
                url, mode = config.db.database_url, app[_WRITER].mode
                if config.serve.run_jobs:
                    await stack.enter_async_context(StorageJobs(url, config.storage, mode))
                if config.alerts.run_alerts:
                    await stack.enter_async_context(AlertService(url, config.alerts, mode))
            yield

    return worker_zero


def create_app(config: WorkerConfig) -> web.Application:
    """Build the aiohttp application of one worker."""
    app = web.Application(
        client_max_size=config.http.http_max_body_bytes, middlewares=[problem_middleware]
    )
    app.add_routes(routes)

    async def storage(app: web.Application) -> AsyncIterator[None]:
        mode = await _storage_mode(config.db.database_url)
        writer = BatchWriter(
            config.db.database_url,
            mode=mode,
            pool_min=config.db.db_pool_min,
            pool_max=config.db.db_pool_max,
            retry_max_s=config.db.db_retry_max_s,
        )
        settings = config.intake
        pipeline = Pipeline(
            writer,
            PipelineSettings(
                max_batch_rows=settings.max_batch_rows,
                flush_interval_s=settings.flush_interval_s,
                max_queue_rows=settings.max_queue_rows,
                max_concurrent_flushes=settings.max_concurrent_flushes,
            ),
        )
        intake = Intake(
            pipeline=pipeline,
            devices=DeviceDirectory(writer.connection, auto_register=settings.auto_register),
            catalog=Catalog(writer.connection),
            rules=IntakeRules(
                limits=Limits(
                    max_future_skew_s=settings.max_future_skew_s,
                    max_items=settings.max_items_per_message,
                ),
                retention=config.storage.retention,
                metrics=writer.metric_keys,
            ),
        )
        app[_WRITER] = writer
        app[HTTP] = HttpIntake(
            intake=intake,
            settings=config.http,
            rate_limits=TokenBuckets(
                config.http.http_rate_per_device, config.http.http_burst_per_device
            ),
            lend=writer.connection,
        )
        async with writer, pipeline:
            log.info("worker %d storing on the %s path", config.worker_index, mode)
            yield

    async def mqtt(app: web.Application) -> AsyncIterator[None]:
        role = config.mqtt_role
        if role == "off":
            yield
            return
        intake = app[HTTP].intake
        max_payload = config.mqtt.mqtt_max_payload_bytes
        async with contextlib.AsyncExitStack() as stack:
            if role == "helper":
                assert config.handoff_socket is not None, "helpers exist under a supervisor"
                handoff = await stack.enter_async_context(HandoffClient(config.handoff_socket))
                app[MQTT_READINESS] = lambda: "ok" if handoff.connected else "joining worker 0"
                receive, ack = handoff.receive, handoff.ack
                receipts: ReceiptSender = NoReceipts()
                if config.mqtt.mqtt_protocol == "5":
                    publisher = ReceiptPublisher(config.mqtt, f"{config.client_id}-receipts")
                    receipts = await stack.enter_async_context(publisher)
            else:
                consumer = MqttConsumer(config.mqtt, config.client_id)
                await stack.enter_async_context(consumer)
                app[MQTT_READINESS] = consumer.readiness
                receive, ack, receipts = consumer.receive, consumer.ack, consumer
                if role == "receiver":
                    dispatcher = Dispatcher(
                        consumer.receive,
                        consumer.ack,
                        config.handoff_socket,
                        window=config.mqtt.mqtt_receive_window,
                    )
                    await stack.enter_async_context(dispatcher)
                    receive, ack = dispatcher.local_receive, dispatcher.local_ack
            async with MqttIntake(
                intake, receive=receive, ack=ack, receipts=receipts, max_payload_bytes=max_payload
            ):
                yield
            # Acknowledge what is committed before the connections close.
            await intake.pipeline.drain()

    app.cleanup_ctx.extend([storage, mqtt, _worker_zero(config)])
    return app


def run_worker(config: WorkerConfig) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully (exit status 0)."""
    paho_speedups.install()  # paho makes MQTT 5 properties for every PUBLISH and PUBACK
    ssl_context = None
    if config.http.http_tls_cert:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(config.http.http_tls_cert, config.http.http_tls_key)
    web.run_app(
        create_app(config),
        host=config.http.ingest_http_host,
        port=config.http.ingest_http_port,
        reuse_port=True,
        ssl_context=ssl_context,
        shutdown_timeout=30,
        # Also closes connections that never finish their headers (slow-loris clients).
        keepalive_timeout=config.http.http_read_timeout_s,
        print=None,
        access_log=None,
    )
