"""The alert evaluator of a deployment: one process at a time, across every host.

Worker 0 of every ingest host runs an :class:`AlertService`, so every deployment gets
alerts without a service of its own to run, and they are evaluated from the database, which
every reading passes through, whatever path it took. On each tick of its apscheduler job
(every ``ALERT_EVAL_INTERVAL_S``) the service tries to take a session-level PostgreSQL
advisory lock on a connection of its own; the one that holds it evaluates, on that very
connection, so that an evaluation can only commit while its lock is held. The others try
again at their next tick: when the holder dies, its connection closes, PostgreSQL releases
the lock, and another host's worker 0 takes over within one interval. (A host that vanishes
without closing its connections is noticed by TCP keepalives, set to about 25 s here.)

The holder also delivers the outbox (:mod:`ingest.alerts.delivery`), woken by each
evaluation that wrote notifications and by the next retry falling due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import UTC, datetime, timedelta

import aiohttp
import psycopg
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from core.errors import one_line
from core.lifecycle import AsyncResource
from ingest.alerts import outbox_statements
from ingest.alerts.delivery import Deliverer, RetryPolicy
from ingest.alerts.evaluate import EvaluationContext, evaluate, prepare
from ingest.alerts.metrics import ALERT_METRICS
from ingest.migrate import ResolvedMode
from ingest.settings import AlertSettings

__all__ = ["EVALUATOR_LOCK", "AlertService"]

log = logging.getLogger(__name__)

#: The advisory lock whose holder evaluates (beside the migrate, partition and rollup locks).
EVALUATOR_LOCK = 0x7E1E_0004
_RETENTION_EVERY = timedelta(hours=1)
# Server side: how soon PostgreSQL gives up on a holder whose host went silent.
_KEEPALIVES = (
    "SELECT set_config('tcp_keepalives_idle', '10', false),"
    " set_config('tcp_keepalives_interval', '5', false),"
    " set_config('tcp_keepalives_count', '3', false)"
)


class AlertService(AsyncResource):
    """Evaluates the alert rules on a schedule and delivers notifications, while it leads."""

    def __init__(
        self,
        database_url: str,
        settings: AlertSettings,
        mode: ResolvedMode,
        *,
        shutdown_timeout_s: float = 30.0,
    ) -> None:
        self._url = database_url
        self._settings = settings
        self._interval_s = settings.alert_eval_interval_s
        self._shutdown_timeout_s = shutdown_timeout_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self._context = EvaluationContext(
            mode=mode,
            default_interval_s=settings.alert_default_interval_s,
            api_url=settings.alert_api_url,
            holder=self.holder,
        )
        self._policy = RetryPolicy(
            timeout_s=settings.alert_delivery_timeout_s,
            first_s=settings.alert_retry_min_s,
            max_s=settings.alert_retry_max_s,
            max_attempts=settings.alert_max_attempts,
        )
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._lock_conn: AsyncConnection[TupleRow] | None = None
        self._delivery_conn: AsyncConnection[TupleRow] | None = None
        self._leading = False
        self._wake = asyncio.Event()
        self._stopping = False
        self._ticks: set[asyncio.Task[object]] = set()
        self._delivery: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._retention_due = datetime.now(UTC)
        #: Evaluations this process committed (it evaluates only while it leads).
        self.evaluations = 0

    @property
    def leading(self) -> bool:
        """Whether this process holds the evaluator's lock (as of its last tick)."""
        return self._leading

    async def _open(self) -> None:
        self._session = aiohttp.ClientSession()
        deliverer = Deliverer(self._session, self._policy)
        self._scheduler.add_job(
            self._tick,
            "interval",
            seconds=self._interval_s,
            next_run_time=datetime.now(UTC),
            coalesce=True,
            misfire_grace_time=None,
        )
        self._scheduler.start()
        self._delivery = asyncio.create_task(
            self._deliver_forever(deliverer), name="alert-delivery"
        )

    async def _close(self) -> None:
        # Paused first: the scheduler's shutdown would cancel an evaluation mid-transaction.
        self._scheduler.pause()
        if self._ticks:
            _, late = await asyncio.wait(self._ticks, timeout=self._shutdown_timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._scheduler.shutdown(wait=False)
        if self._delivery is not None:
            # A round under way finishes (its answers recorded), so that a restart does not
            # send what was delivered a moment ago; one stuck past the limit is cut off.
            self._stopping = True
            self._wake.set()
            _, late = await asyncio.wait([self._delivery], timeout=self._shutdown_timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(self._delivery, return_exceptions=True)
        await self._resign()
        if self._delivery_conn is not None:
            await self._delivery_conn.close()
        if self._session is not None:
            await self._session.close()

    async def _connect(self) -> AsyncConnection[TupleRow]:
        """Open a connection on which a vanished peer is noticed in about 25 s, either way."""
        conn = await psycopg.AsyncConnection.connect(
            self._url,
            autocommit=True,
            connect_timeout=5,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        await conn.execute(_KEEPALIVES)
        return conn

    async def _lead(self) -> AsyncConnection[TupleRow] | None:
        """Return the lock's connection when this process holds the lock, else None."""
        if self._lock_conn is None or self._lock_conn.closed:
            self._leading = False
            self._lock_conn = await self._connect()
            await prepare(self._lock_conn)
        if not self._leading:
            cur = await self._lock_conn.execute("SELECT pg_try_advisory_lock(%s)", [EVALUATOR_LOCK])
            row = await cur.fetchone()
            self._leading = bool(row and row[0])
            if self._leading:
                ALERT_METRICS.evaluator.set(1)
                log.info("this process (%s) now evaluates the alert rules", self.holder)
        return self._lock_conn if self._leading else None

    async def _resign(self) -> None:
        """Close the lock's connection, which releases the lock."""
        conn, self._lock_conn = self._lock_conn, None
        if self._leading:
            ALERT_METRICS.evaluator.set(0)
        self._leading = False
        if conn is not None:
            await conn.close()

    async def _tick(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._ticks.add(task)
        try:
            conn = await self._lead()
            if conn is not None:
                await self._evaluate(conn)
        except psycopg.OperationalError as exc:
            if self._leading:
                log.warning(
                    "alert evaluation lost its database connection (%s); another evaluator"
                    " may take over, this one tries again in %g s",
                    one_line(exc),
                    self._interval_s,
                )
            else:
                log.warning("alert evaluator cannot reach the database: %s", one_line(exc))
            await self._resign()
        except psycopg.Error:
            ALERT_METRICS.evaluation_failures.inc()
            log.exception("alert evaluation failed (it runs again in %g s)", self._interval_s)
        finally:
            self._ticks.discard(task)

    async def _evaluate(self, conn: AsyncConnection[TupleRow]) -> None:
        result = await evaluate(conn, datetime.now(UTC), self._context)
        self.evaluations += 1
        ALERT_METRICS.evaluations.inc()
        ALERT_METRICS.evaluation_seconds.observe(result.seconds)
        ALERT_METRICS.transitions.inc(result.transitions)
        if result.notifications:
            self._wake.set()
        if result.seconds > self._interval_s:
            log.warning(
                "alert evaluation took %.1f s, longer than ALERT_EVAL_INTERVAL_S (%g s): raise"
                " it, or narrow the rules' scopes (docs/alerts.md#performance)",
                result.seconds,
                self._interval_s,
            )
        now = datetime.now(UTC)
        if now >= self._retention_due:
            self._retention_due = now + _RETENTION_EVERY
            cutoff = now - timedelta(days=self._settings.alert_retention_days)
            async with conn.transaction():
                for statement in outbox_statements.RETENTION:
                    await conn.execute(statement, {"cutoff": cutoff})

    async def _deliver_forever(self, deliverer: Deliverer) -> None:
        while not self._stopping:
            self._wake.clear()
            wait_s = self._interval_s
            if self._leading:
                try:
                    wait_s = await self._deliver(deliverer)
                except psycopg.OperationalError as exc:
                    log.warning("alert delivery lost its database connection: %s", one_line(exc))
                    conn, self._delivery_conn = self._delivery_conn, None
                    if conn is not None:
                        await conn.close()
                except Exception:  # the delivery loop must outlive one failed round
                    log.exception("alert delivery failed (it runs again)")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait_s)

    async def _deliver(self, deliverer: Deliverer) -> float:
        """Deliver what is due; return how long to wait before the next round."""
        if self._delivery_conn is None or self._delivery_conn.closed:
            self._delivery_conn = await self._connect()
        await deliverer.deliver_due(self._delivery_conn, datetime.now(UTC))
        due = await deliverer.next_due(self._delivery_conn)
        if due is None:
            return self._interval_s
        return min(self._interval_s, max(0.05, (due - datetime.now(UTC)).total_seconds()))
