"""The writer keeps ``latest_readings``: newest value per device and metric, on both paths."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import cast

import psycopg
from prometheus_client import REGISTRY

from ingest import statements
from ingest.copy_rows import encode_latest
from ingest.records import ReadingSet
from ingest.writer import BatchWriter
from tests.ingest.helpers import T0, add_device, fetch_all, mode_of, open_writer, series

LATEST = """
SELECT d.device_id, m.name, l.time, l.value
FROM latest_readings l
JOIN devices d USING (device_key)
JOIN metrics m USING (metric_key)
ORDER BY 1, 2
"""


async def _latest(url: str) -> dict[tuple[str, str], tuple[datetime, float]]:
    rows = await fetch_all(url, LATEST)
    return {(str(d), str(m)): (cast("datetime", t), cast("float", v)) for d, m, t, v in rows}


async def test_latest_follows_the_newest_reading_only(db_url: str, storage_mode: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        dev = await add_device(conn, "lt")
    t9 = T0 + timedelta(seconds=9)
    async with open_writer(db_url, storage_mode) as writer:
        # Out of order within a batch: the newest wins, not the last one.
        batch = series(dev, T0, 10)
        await writer.write([*batch[5:], *batch[:5]])
        await writer.flush_latest()
        assert await _latest(db_url) == {
            ("lt", "temperature"): (t9, 90.25),
            ("lt", "humidity"): (t9, 91.25),
        }
        # Late readings, one flushed on its own and one folded before the flush with a newer
        # one, do not move it back.
        await writer.write([(dev, T0 - timedelta(hours=1), {"temperature": -1.0})])
        await writer.flush_latest()
        await writer.write([(dev, t9 + timedelta(seconds=1), {"temperature": 5.0})])
        await writer.write([(dev, T0 + timedelta(seconds=3), {"temperature": -3.0})])
        # A duplicate (same key, another value) is not stored, so it is not the latest either.
        result = await writer.write([(dev, t9, {"humidity": -2.0})])
        assert result.duplicates == 1
        await writer.flush_latest()
    assert await _latest(db_url) == {
        ("lt", "temperature"): (t9 + timedelta(seconds=1), 5.0),
        ("lt", "humidity"): (t9, 91.25),
    }
    stored = await fetch_all(
        db_url,
        "SELECT value FROM readings WHERE time = '2026-11-20 10:00:09+00' ORDER BY value",
    )
    assert stored == [(90.25,), (91.25,)]


async def test_latest_is_flushed_in_the_background_and_on_close(
    db_url: str, storage_mode: str
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        dev = await add_device(conn, "bg")
    writer = BatchWriter(db_url, mode=mode_of(storage_mode), pool_min=1, latest_flush_s=0.05)
    async with writer:
        await writer.write(series(dev, T0, 3))
        for _ in range(100):
            if await _latest(db_url):
                break
            await asyncio.sleep(0.05)
        assert len(await _latest(db_url)) == 2
        await writer.write(series(dev, T0 + timedelta(minutes=1), 1, metrics=("late",)))
    assert (await _latest(db_url))[("bg", "late")] == (T0 + timedelta(minutes=1), 0.25)


async def test_pending_latest_values_are_bounded(db_url: str, storage_mode: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        devs = [await add_device(conn, f"b{i}") for i in range(3)]
    writer = BatchWriter(
        db_url, mode=mode_of(storage_mode), pool_min=1, latest_flush_s=3600, latest_max_keys=4
    )
    async with writer:
        for dev in devs:
            await writer.write(series(dev, T0, 1))
        # Two devices of two metrics reached the bound: the third write flushed them first.
        assert len(await _latest(db_url)) == 4
    assert len(await _latest(db_url)) == 6


async def test_concurrent_writers_of_the_same_keys_do_not_deadlock(
    db_url: str, storage_mode: str
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        devs = [await add_device(conn, f"c{i:02d}") for i in range(30)]
    metrics = tuple(f"m{i}" for i in range(5))
    writers = [
        BatchWriter(db_url, mode=mode_of(storage_mode), pool_min=1, latest_flush_s=3600)
        for _ in range(4)
    ]
    rng = random.Random(7)
    newest = T0 + timedelta(seconds=40)
    retries_before = _db_retries()
    for w in writers:
        await w.open()
    try:
        for round_ in range(10):
            batches: list[list[ReadingSet]] = []
            for i in range(len(writers)):
                # Every writer touches every key, each in an order of its own.
                order = devs[:]
                rng.shuffle(order)
                ts = T0 + timedelta(seconds=round_ * 4 + i + 1)
                batches.append([(d, ts, dict.fromkeys(metrics, float(i))) for d in order])
            await asyncio.gather(*(w.write(b) for w, b in zip(writers, batches, strict=True)))
            await asyncio.gather(*(w.flush_latest() for w in writers))
    finally:
        for w in writers:
            await w.close()
    # A deadlock is retried as a transient failure: none may have happened.
    assert _db_retries() == retries_before
    latest = await _latest(db_url)
    assert len(latest) == len(devs) * len(metrics)
    assert set(latest.values()) == {(newest, 3.0)}


def _db_retries() -> float:
    return REGISTRY.get_sample_value("ingest_db_retries_total") or 0.0


async def test_latest_values_of_every_type_are_encoded_exactly(db_url: str) -> None:
    """The binary COPY rows built for the upsert read back as the values that went in."""
    moments = [T0, T0 + timedelta(microseconds=1), datetime(1999, 12, 31, 23, 59, 59, 999999, UTC)]
    values: list[float | bool | str] = [1e-300, -0.0, 7, True, False, "", "ok €🙂", "x" * 5000]
    rows = [(i, i % 3, moments[i % len(moments)], value) for i, value in enumerate(values, start=1)]
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        await conn.execute(statements.CREATE_STAGING_LATEST)
        async with conn.cursor().copy(statements.COPY_LATEST) as copy:
            await copy.write(encode_latest(rows))
        cur = await conn.execute(
            "SELECT device_key, metric_key, time, value, value_bool, value_text"
            " FROM staging_latest ORDER BY device_key"
        )
        stored = await cur.fetchall()
    expected = [
        (
            key,
            metric,
            ts,
            None if isinstance(v, bool | str) else float(v),
            v if isinstance(v, bool) else None,
            v if isinstance(v, str) else None,
        )
        for key, metric, ts, v in rows
    ]
    assert stored == expected
    assert str(stored[1][3]) == "-0.0"
