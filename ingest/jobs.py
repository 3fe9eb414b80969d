"""Storage upkeep on a schedule, in worker 0: partitions, retention, rollups.

The jobs run under apscheduler's asyncio scheduler, each on a connection of its own;
advisory locks inside the jobs (:mod:`ingest.maintenance`) keep concurrent runs on other
hosts harmless. A failed run is logged and runs again at its next time. Closing stops the
schedule and waits for a job that is running to finish (up to ``shutdown_timeout_s``), so
that none is cut off in the middle of its transaction.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import psycopg
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.errors import one_line
from core.lifecycle import AsyncResource
from ingest import maintenance
from ingest.errors import IngestError
from ingest.migrate import ResolvedMode
from ingest.settings import StorageSettings

__all__ = ["StorageJobs"]

log = logging.getLogger(__name__)


class StorageJobs(AsyncResource):
    """The storage jobs of one deployment, scheduled while open."""

    def __init__(
        self,
        database_url: str,
        storage: StorageSettings,
        mode: ResolvedMode,
        *,
        shutdown_timeout_s: float = 30.0,
    ) -> None:
        self._url = database_url
        self._storage = storage
        self._plain = mode == "plain"
        self._shutdown_timeout_s = shutdown_timeout_s
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._running: set[asyncio.Task[object]] = set()

    async def _open(self) -> None:
        now, hour = datetime.now(UTC), timedelta(hours=1)
        self._every(hour, "retention", self._retention, first=now + timedelta(seconds=30))
        if self._plain:
            self._every(hour, "partitions", self._partitions, first=now)
            refresh = timedelta(seconds=self._storage.rollup_refresh_interval_s)
            self._every(refresh, "rollups", self._rollups, first=now)
        self._scheduler.start()

    def _every(
        self, interval: timedelta, name: str, job: maintenance.Job, *, first: datetime
    ) -> None:
        self._scheduler.add_job(
            self._run,
            "interval",
            seconds=interval.total_seconds(),
            args=[name, job],
            next_run_time=first,
        )

    async def _close(self) -> None:
        # Paused first: the scheduler's shutdown cancels the jobs that are still running.
        self._scheduler.pause()
        if self._running:
            _, late = await asyncio.wait(self._running, timeout=self._shutdown_timeout_s)
            if late:
                log.warning("%d storage jobs did not finish in time; cancelling them", len(late))
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        self._scheduler.shutdown(wait=False)

    async def _run(self, name: str, job: maintenance.Job) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                await job(conn, datetime.now(UTC))
        except (psycopg.Error, IngestError) as exc:
            log.warning("storage job %s failed (will run again): %s", name, one_line(exc))
        finally:
            self._running.discard(task)

    async def _partitions(self, conn: maintenance.Conn, now: datetime) -> None:
        await maintenance.ensure_partitions(conn, now, self._storage.partitions_ahead_days)

    async def _retention(self, conn: maintenance.Conn, now: datetime) -> None:
        storage = self._storage
        await maintenance.apply_retention(
            conn,
            now,
            storage.tiers,
            storage.dead_letter_retention_days,
            plain=self._plain,
        )

    async def _rollups(self, conn: maintenance.Conn, now: datetime) -> None:
        await maintenance.refresh_rollups(conn, now)
