"""Shared helpers for storage tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Literal

import psycopg
from psycopg.rows import TupleRow

from ingest.records import ReadingSet
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
