"""One ingest worker: HTTP intake, MQTT intake, the pipeline, the writer and scheduled jobs.

Resources come up in ``cleanup_ctx`` order (writer → pipeline → MQTT → jobs) and go down in
reverse: MQTT stops taking messages, the pipeline flushes and the last acknowledgements
leave, then the connection to the broker and the database pool close.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from ingest import maintenance
from ingest.context import INTAKE, Intake
from ingest.errors import ConfigError, StorageError, one_line
from ingest.http import problem_middleware, routes
from ingest.intake import IntakeRules, add_items, add_reject, log_rejects
from ingest.metrics import METRICS
from ingest.migrate import MIGRATIONS, ResolvedMode, schema_state
from ingest.mqtt import Delivery, MqttConsumer
from ingest.pipeline import Outcome, Pipeline, PipelineSettings, Submission
from ingest.ratelimit import TokenBuckets
from ingest.registry import (
    DeviceAuthenticator,
    DeviceRef,
    Miss,
    register_device_without_token,
)
from ingest.settings import (
    DatabaseSettings,
    HttpSettings,
    IntakeSettings,
    MqttSettings,
    ServeSettings,
    StorageSettings,
)
from ingest.wire import Limits, Reason, Reject, parse_payload, parse_topic
from ingest.writer import BatchWriter

__all__ = ["WorkerConfig", "create_app", "run_worker"]

log = logging.getLogger(__name__)

_RECEIVED_MQTT = METRICS.received.labels("mqtt")
_STARTUP_WAIT_S = 60.0
_MQTT_RETRY_S = 1.0


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

    @property
    def mqtt_enabled(self) -> bool:
        """Whether this worker consumes MQTT.

        ``MQTT_URL=none`` turns it off. With a plain subscription (``MQTT_SHARE_GROUP=""``)
        every subscriber gets every message, so only worker 0 consumes and the others serve
        HTTP.
        """
        configured = self.mqtt.mqtt_url.strip().lower() not in ("", "none", "off")
        return configured and (bool(self.mqtt.mqtt_share_group) or self.worker_index == 0)

    @property
    def client_id(self) -> str:
        """MQTT client id: stable per worker, so its session survives restarts."""
        prefix = self.mqtt.mqtt_client_id or f"ingest-{socket.gethostname()}"
        return f"{prefix}-{self.worker_index}"


async def _storage_mode(url: str) -> ResolvedMode:
    """Read the storage path from the database, waiting for it to come up."""
    deadline = asyncio.get_running_loop().time() + _STARTUP_WAIT_S
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, connect_timeout=5) as conn:
                version, mode = await schema_state(conn)
            break
        except psycopg.OperationalError as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise ConfigError(f"database unreachable at start-up: {one_line(exc)}") from exc
            log.warning("database not reachable yet (%s); retrying", one_line(exc))
            await asyncio.sleep(2)
    if mode is None or version < MIGRATIONS[-1][0]:
        raise ConfigError(
            f"database schema is at version {version}, not {MIGRATIONS[-1][0]}: "
            "run `python -m ingest migrate` first"
        )
    return mode


class MqttIntake:
    """Turns MQTT deliveries into submissions and acknowledges them after commit."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self._retries: set[asyncio.Task[None]] = set()

    async def handle(self, deliveries: list[Delivery]) -> None:
        """Queue the messages as one submission; ack them, or retry, when it commits.

        Grouping the messages that arrived together spares a future, a queue entry and a
        callback per message.
        """
        _RECEIVED_MQTT.inc(len(deliveries))
        sub = Submission(datetime.now(UTC))
        try:
            for delivery in deliveries:
                await self._add(sub, delivery)
            await self.intake.pipeline.submit(sub)
        except (StorageError, psycopg.Error) as exc:
            self._retry_later(deliveries, exc)
            return
        sub.future.add_done_callback(lambda fut: self._committed(fut, deliveries))

    async def _device(self, device_id: str) -> DeviceRef | None:
        cached = self.intake.devices.cached_id(device_id)
        if not isinstance(cached, Miss):
            return cached
        async with self.intake.writer.connection() as conn:
            ref = await self.intake.devices.by_id(conn, device_id)
            if ref is None and self.intake.auto_register:
                ref = await register_device_without_token(conn, device_id)
                self.intake.devices.forget(device_id)
                log.info("device %s registered automatically (AUTO_REGISTER=true)", device_id)
        return ref

    async def _add(self, sub: Submission, delivery: Delivery) -> None:
        body = delivery.payload
        topic = parse_topic(delivery.topic)
        if isinstance(topic, Reject):
            self._refuse(sub, topic.reason, topic.detail, body, None)
            return
        device_id, fmt = topic
        if len(body) > self.intake.max_mqtt_payload_bytes:
            detail = f"payload of {len(body)} bytes over {self.intake.max_mqtt_payload_bytes}"
            self._refuse(sub, Reason.TOO_LARGE, detail, body, device_id)
            return
        ref = await self._device(device_id)
        if ref is None:
            detail = f"device {device_id} is not registered (register it through the API)"
            self._refuse(sub, Reason.UNKNOWN_DEVICE, detail, body, device_id)
            return
        parsed = parse_payload(body, fmt, device_id, sub.received_at, self.intake.limits)
        whole = next((r for r in parsed.rejects if r.index < 0), None)
        if whole is not None:
            self._refuse(sub, whole.reason, whole.detail, body, device_id)
            return
        rejects = add_items(
            sub,
            parsed,
            body,
            device_key=ref.device_key,
            device_id=device_id,
            source="mqtt",
            rules=self.intake.rules,
        )
        log_rejects("mqtt", device_id, rejects, parsed.total)

    @staticmethod
    def _refuse(
        sub: Submission, reason: Reason, detail: str, body: bytes, device_id: str | None
    ) -> None:
        log.info("device %s: message rejected (%s): %s", device_id or "?", reason.value, detail)
        add_reject(sub, reason, detail, body, source="mqtt", device_id=device_id)

    def _committed(self, fut: asyncio.Future[Outcome], deliveries: list[Delivery]) -> None:
        consumer = self.intake.mqtt
        assert consumer is not None
        exc = fut.exception()
        if exc is None:
            consumer.ack(deliveries)
        else:
            self._retry_later(deliveries, exc)

    def _retry_later(self, deliveries: list[Delivery], exc: BaseException) -> None:
        # Not committed: keep them unacknowledged and try again here (the broker would
        # only redeliver them after a reconnect).
        log.warning("%d messages not stored (%s); retrying", len(deliveries), one_line(exc))
        task = asyncio.create_task(self._retry(deliveries), name="mqtt-retry")
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _retry(self, deliveries: list[Delivery]) -> None:
        await asyncio.sleep(_MQTT_RETRY_S)
        await self.handle(deliveries)

    async def close(self) -> None:
        """Cancel pending retries; their messages stay unacknowledged for the broker."""
        for task in list(self._retries):
            task.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)


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
        pipeline = Pipeline(
            writer,
            PipelineSettings(
                max_batch_rows=config.intake.max_batch_rows,
                flush_interval_s=config.intake.flush_interval_s,
                max_queue_rows=config.intake.max_queue_rows,
                max_concurrent_flushes=config.intake.max_concurrent_flushes,
            ),
        )
        app[INTAKE] = Intake(
            writer=writer,
            pipeline=pipeline,
            devices=DeviceAuthenticator(),
            rate_limits=TokenBuckets(
                config.http.http_rate_per_device, config.http.http_burst_per_device
            ),
            limits=Limits(
                max_future_skew_s=config.intake.max_future_skew_s,
                max_items=config.intake.max_items_per_message,
            ),
            rules=IntakeRules(retention=timedelta(days=config.storage.retention_days)),
            http=config.http,
            auto_register=config.intake.auto_register,
            max_mqtt_payload_bytes=config.mqtt.mqtt_max_payload_bytes,
        )
        async with writer:
            await pipeline.start()
            log.info("worker %d storing on the %s path", config.worker_index, mode)
            yield
            await pipeline.stop()

    async def mqtt(app: web.Application) -> AsyncIterator[None]:
        if not config.mqtt_enabled:
            yield
            return
        intake = app[INTAKE]
        handler = MqttIntake(intake)
        consumer = MqttConsumer(config.mqtt, config.client_id, handler.handle)
        intake.mqtt = consumer
        await consumer.start()
        yield
        await consumer.stop_intake()
        await handler.close()
        await intake.pipeline.stop()  # flush and acknowledge before we disconnect
        await consumer.close()

    async def jobs(app: web.Application) -> AsyncIterator[None]:
        if not config.serve.run_jobs or config.worker_index != 0:
            yield
            return
        scheduler = _scheduler(config, app[INTAKE].writer.mode)
        scheduler.start()
        yield
        scheduler.shutdown(wait=False)

    app.cleanup_ctx.extend([storage, mqtt, jobs])
    return app


def _scheduler(config: WorkerConfig, mode: ResolvedMode) -> AsyncIOScheduler:
    """Storage upkeep: advisory locks keep concurrent runs (other hosts) harmless."""
    url, storage = config.db.database_url, config.storage
    plain = mode == "plain"

    async def run(name: str, job: maintenance.Job) -> None:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await job(conn, datetime.now(UTC))
        except (psycopg.Error, StorageError) as exc:
            log.warning("storage job %s failed (will run again): %s", name, one_line(exc))

    async def partitions(conn: maintenance.Conn, now: datetime) -> None:
        await maintenance.ensure_partitions(conn, now, storage.partitions_ahead_days)

    async def retention(conn: maintenance.Conn, now: datetime) -> None:
        await maintenance.apply_retention(
            conn, now, storage.retention_days, storage.dead_letter_retention_days, plain=plain
        )

    async def rollups(conn: maintenance.Conn, now: datetime) -> None:
        await maintenance.refresh_rollups(conn, now)

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(
        run,
        "interval",
        hours=1,
        args=["retention", retention],
        next_run_time=datetime.now(UTC) + timedelta(seconds=30),
    )
    if plain:
        scheduler.add_job(
            run,
            "interval",
            hours=1,
            args=["partitions", partitions],
            next_run_time=datetime.now(UTC),
        )
        scheduler.add_job(
            run,
            "interval",
            seconds=storage.rollup_refresh_interval_s,
            args=["rollups", rollups],
            next_run_time=datetime.now(UTC),
        )
    return scheduler


def run_worker(config: WorkerConfig) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully (exit status 0)."""
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
