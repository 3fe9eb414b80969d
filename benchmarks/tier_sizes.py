"""Bytes per device-metric-day of each storage tier, on both storage paths.

``python -m benchmarks.tier_sizes [--path all|plain|timescale] [--series 20] [--days 2]``

Loads ``--series`` device-metric series (devices of 4 metrics), a reading every
``--interval-s`` (1) seconds, for ``--days`` whole UTC days ending yesterday, through the
ingest's BatchWriter; refreshes every rollup; on TimescaleDB compresses every chunk of
``readings`` (as the compression policy would after ``COMPRESS_AFTER_DAYS``); VACUUM
ANALYZE; then divides each tier's size on disk (heap, indexes and TOAST:
``pg_total_relation_size`` of every partition on plain PostgreSQL, ``hypertable_size`` of
the hypertable or the aggregate's materialization on TimescaleDB) by series x days.
Values are a sensor's random walk rounded to 2 decimals. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Literal

import psycopg
from psycopg.rows import TupleRow

from benchmarks.common import database_server, refresh_all, scratch_database, storage_paths
from ingest.records import ReadingSet
from ingest.writer import BatchWriter

_METRICS = ("temperature", "humidity", "pressure", "rx_bytes")
_SETS_PER_BATCH = 1250  # 5,000 rows

_PLAIN_SIZES = """
SELECT (SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits
        WHERE inhparent = 'readings'::regclass),
       pg_total_relation_size('readings_1m'), pg_total_relation_size('readings_1h'),
       pg_total_relation_size('readings_1d')
"""
_TIMESCALE_SIZES = """
SELECT hypertable_size('readings'),
       (SELECT hypertable_size(format('%I.%I', materialization_hypertable_schema,
                                      materialization_hypertable_name)::regclass)
        FROM timescaledb_information.continuous_aggregates WHERE view_name = 'readings_1m'),
       (SELECT hypertable_size(format('%I.%I', materialization_hypertable_schema,
                                      materialization_hypertable_name)::regclass)
        FROM timescaledb_information.continuous_aggregates WHERE view_name = 'readings_1h'),
       (SELECT hypertable_size(format('%I.%I', materialization_hypertable_schema,
                                      materialization_hypertable_name)::regclass)
        FROM timescaledb_information.continuous_aggregates WHERE view_name = 'readings_1d')
"""
_COUNTS = """
SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM readings_1m),
       (SELECT count(*) FROM readings_1h), (SELECT count(*) FROM readings_1d)
"""


async def _load(
    url: str, mode: Literal["plain", "timescale"], series: int, days: int, interval_s: int
) -> datetime:
    devices = -(-series // len(_METRICS))
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO devices (device_id) SELECT 'size-' || g FROM generate_series(1, %s) g",
            [devices],
        )
        if mode == "timescale":
            await conn.execute(
                "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
                " WHERE hypertable_name IS NOT NULL"
            )
    rng = random.Random(1)
    level = dict.fromkeys(range(1, devices + 1), 20.0)
    day0 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = day0 - timedelta(days=days + 1)
    async with BatchWriter(url, mode=mode, pool_min=1) as writer:
        batch: list[ReadingSet] = []
        for second in range(0, days * 86400, interval_s):
            ts = start + timedelta(seconds=second)
            for key in level:
                level[key] += rng.gauss(0, 0.05)
                base = level[key]
                batch.append(
                    (key, ts, {m: round(base * (i + 1), 2) for i, m in enumerate(_METRICS)})
                )
            if len(batch) >= _SETS_PER_BATCH:
                await writer.write(batch)
                batch = []
        if batch:
            await writer.write(batch)
    return start + timedelta(days=days)


async def tier_bytes(
    conn: psycopg.AsyncConnection[TupleRow], mode: Literal["plain", "timescale"]
) -> tuple[int, int, int, int]:
    """Return the bytes on disk of raw readings and of the 1m, 1h and 1d rollups."""
    row = await (
        await conn.execute(_PLAIN_SIZES if mode == "plain" else _TIMESCALE_SIZES)
    ).fetchone()
    assert row is not None
    raw, one_minute, one_hour, one_day = (int(str(v or 0)) for v in row)
    return raw, one_minute, one_hour, one_day


async def _measure(
    url: str, mode: Literal["plain", "timescale"], series: int, days: int, interval_s: int
) -> dict[str, object]:
    until = await _load(url, mode, series, days, interval_s)
    await refresh_all(url, mode, until)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if mode == "timescale":
            await conn.execute("SELECT compress_chunk(c) FROM show_chunks('readings') c")
            await conn.execute("VACUUM ANALYZE")
        sizes = await tier_bytes(conn, mode)
        counts = await (await conn.execute(_COUNTS)).fetchone()
    assert counts is not None
    stored = len(_METRICS) * -(-series // len(_METRICS))
    tiers = {}
    for tier, size, rows in zip(("raw", "1m", "1h", "1d"), sizes, counts, strict=True):
        tiers[tier] = {
            "bytes": int(size),
            "rows": int(rows),
            "bytes_per_row": round(int(size) / max(int(rows), 1), 1),
            "bytes_per_series_day": round(int(size) / (stored * days)),
        }
    return {"path": mode, "series": stored, "days": days, "interval_s": interval_s, "tiers": tiers}


def main() -> None:
    """Measure and print the sizes as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--path", default="all", choices=("all", "plain", "timescale"))
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--interval-s", type=int, default=1, help="seconds between readings")
    args = parser.parse_args()
    results = []
    with database_server() as admin_url:
        for mode in storage_paths(admin_url, args.path):
            with scratch_database(admin_url, mode) as url:
                results.append(
                    asyncio.run(_measure(url, mode, args.series, args.days, args.interval_s))
                )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
