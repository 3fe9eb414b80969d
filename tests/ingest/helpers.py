"""Shared helpers for storage tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Literal

import psycopg
from psycopg.rows import TupleRow

from ingest import maintenance
from ingest.migrate import migrate
from ingest.records import ReadingSet
from ingest.settings import StorageSettings
from ingest.writer import BatchWriter

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def mode_of(storage_mode: str) -> Literal["timescale", "plain"]:
    return "timescale" if storage_mode == "timescale" else "plain"


@asynccontextmanager
async def open_writer(
    url: str, storage_mode: str, *, retry_max_s: float = 5.0
) -> AsyncIterator[BatchWriter]:
    writer = BatchWriter(url, mode=mode_of(storage_mode), pool_min=1, retry_max_s=retry_max_s)
    async with writer:
        yield writer


async def add_device(conn: psycopg.AsyncConnection[TupleRow], device_id: str) -> int:
    cur = await conn.execute(
        "INSERT INTO devices (device_id) VALUES (%s) RETURNING device_key", [device_id]
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def series(
    device_key: int,
    start: datetime,
    count: int,
    step: timedelta = timedelta(seconds=1),
    metrics: tuple[str, ...] = ("temperature", "humidity"),
) -> list[ReadingSet]:
    """``count`` reading-sets of a device, one per ``step``, with distinct values."""
    return [
        (
            device_key,
            start + i * step,
            {m: float(i * 10 + j) + 0.25 for j, m in enumerate(metrics)},
        )
        for i in range(count)
    ]


async def fetch_all(url: str, query: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(query.encode())
        return list(await cur.fetchall())


#: Tiered retention for the tier tests, and the ages (days) of the readings they store:
#: each tier keeps the ages before its horizon.
TIERED = {
    "retention_raw_days": 10,
    "retention_1m_days": 30,
    "retention_1h_days": 60,
    "retention_1d_days": 120,
}
AGES_DAYS = (3, 20, 45, 90, 150)
KEPT_AGES = {
    "readings": {3},
    "readings_1m": {3, 20},
    "readings_1h": {3, 20, 45},
    "readings_1d": {3, 20, 45, 90},
}


async def migrate_tiered(url: str, storage_mode: str) -> StorageSettings:
    """Apply the ``TIERED`` retention; on TimescaleDB unschedule the policies (tests run them)."""
    storage = StorageSettings(storage_mode=mode_of(storage_mode), **TIERED)  # type: ignore[arg-type]
    await migrate(url, storage)
    if storage_mode == "timescale":
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                "SELECT alter_job(job_id, scheduled => false)"
                " FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL"
            )
    return storage


async def store_ages(url: str, storage_mode: str, device_id: str, now: datetime) -> None:
    """Store 10 readings a second apart (values 0 to 9) at each of ``AGES_DAYS`` before now.

    The readings start on a whole hour, so that each age fills part of one rollup row of
    every tier; the rollups are then refreshed.
    """
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        key = await add_device(conn, device_id)
    hour = now.replace(minute=0, second=0, microsecond=0)
    async with open_writer(url, storage_mode) as writer:
        for age in AGES_DAYS:
            start = hour - timedelta(days=age)
            await writer.write(
                [(key, start + timedelta(seconds=i), {"bytes": float(i)}) for i in range(10)]
            )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if storage_mode == "plain":
            await maintenance.refresh_rollups(conn, now + timedelta(days=1))
        else:
            for view in ("readings_1m", "readings_1h", "readings_1d"):
                await conn.execute(
                    "CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL)", [view]
                )


async def run_retention(url: str, storage_mode: str, storage: StorageSettings) -> None:
    """Run retention once as the deployment would: the plain job, or TimescaleDB's policies."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if storage_mode == "plain":
            await maintenance.apply_retention(
                conn, datetime.now(UTC), storage.tiers, 30, plain=True
            )
            return
        cur = await conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_retention' ORDER BY job_id"
        )
        for (job_id,) in await cur.fetchall():
            await conn.execute("CALL run_job(%s)", [job_id])
