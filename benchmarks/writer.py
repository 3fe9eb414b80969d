"""Writer rows/s against raw binary COPY into the same table, side by side, median of runs.

5,000-row batches from 1,000 devices x 4 metrics, dedup on (the writer's INSERT ... ON
CONFLICT), each batch its own transaction. Prints one JSON line per storage path:
``{"path": ..., "writer_rows_s": ..., "raw_copy_rows_s": ..., "ratio": ...}``.
Reads ``DATABASE_URL`` (a role that may create databases); without it, starts a private
PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Literal

import psycopg

from benchmarks.common import database_server, median, scratch_database, storage_paths
from ingest.records import ReadingSet
from ingest.writer import BatchWriter

DEVICES = 1_000
METRICS = ("temperature", "humidity", "pressure", "voltage")
BATCH_ROWS = 5_000
COPY_RAW = "COPY readings (time, device_key, metric_key, value) FROM STDIN (FORMAT BINARY)"


def make_batches(total_rows: int, start: datetime) -> list[list[ReadingSet]]:
    """Batches of reading-sets: each device reports all metrics once a second."""
    sets_per_batch = BATCH_ROWS // len(METRICS)
    sets: list[ReadingSet] = [
        (
            1 + i % DEVICES,
            start + timedelta(seconds=i // DEVICES),
            {m: float(i % 977) + k / 10 for k, m in enumerate(METRICS)},
        )
        for i in range(total_rows // len(METRICS))
    ]
    return [sets[i : i + sets_per_batch] for i in range(0, len(sets), sets_per_batch)]


async def prepare(url: str) -> None:
    """Register the devices and metrics so both sides write the same keys."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO devices (device_id) SELECT 'bench-' || g FROM generate_series(1, %s) g",
            [DEVICES],
        )
        await conn.execute("INSERT INTO metrics (name) SELECT unnest(%s::text[])", [list(METRICS)])


async def truncate(url: str) -> None:
    """Empty the readings between runs so that each starts from the same table size."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("TRUNCATE readings")
        await conn.execute("CHECKPOINT")


async def run_writer(
    url: str, mode: Literal["plain", "timescale"], batches: list[list[ReadingSet]]
) -> float:
    """Rows/s through the BatchWriter."""
    rows = sum(len(v) for batch in batches for _, _, v in batch)
    async with BatchWriter(url, mode=mode, pool_min=1, pool_max=1) as writer:
        await writer.write(batches[0][:1])  # warm the pool and the metric cache
        await truncate(url)
        started = time.perf_counter()
        for batch in batches:
            await writer.write(batch)
        elapsed = time.perf_counter() - started
    return rows / elapsed


async def run_raw_copy(url: str, batches: list[list[ReadingSet]]) -> float:
    """Rows/s of plain binary COPY of the same rows straight into readings."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT name, metric_key FROM metrics")
        keys: dict[str, int] = dict(await cur.fetchall())
        row_batches = [
            [(ts, dev, keys[m], v) for dev, ts, values in batch for m, v in values.items()]
            for batch in batches
        ]
        rows = sum(len(b) for b in row_batches)
        started = time.perf_counter()
        for batch_rows in row_batches:
            async with conn.transaction(), conn.cursor().copy(COPY_RAW) as copy:
                copy.set_types(["timestamptz", "int4", "int2", "float8"])
                for row in batch_rows:
                    await copy.write_row(row)
        elapsed = time.perf_counter() - started
    return rows / elapsed


async def bench_path(
    url: str, mode: Literal["plain", "timescale"], rows: int, runs: int
) -> dict[str, object]:
    """Alternate raw and writer runs on one database and take medians."""
    await prepare(url)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    batches = make_batches(rows, start)
    writer_rates: list[float] = []
    raw_rates: list[float] = []
    for run in range(runs):
        await truncate(url)
        raw_rates.append(await run_raw_copy(url, batches))
        await truncate(url)
        writer_rates.append(await run_writer(url, mode, batches))
        print(
            f"  {mode} run {run + 1}/{runs}: raw {raw_rates[-1]:,.0f} rows/s,"
            f" writer {writer_rates[-1]:,.0f} rows/s",
            file=sys.stderr,
        )
    writer_rows_s, raw_rows_s = median(writer_rates), median(raw_rates)
    return {
        "benchmark": "writer",
        "path": mode,
        "rows_per_run": rows,
        "runs": runs,
        "writer_rows_s": writer_rows_s,
        "raw_copy_rows_s": raw_rows_s,
        # Each run pairs the two sides back to back; the median of those ratios is steadier
        # on a shared machine than a ratio of medians.
        "ratio": round(
            statistics.median(w / r for w, r in zip(writer_rates, raw_rates, strict=True)), 3
        ),
    }


def main() -> int:
    """Run the benchmark on each storage path available."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000, help="rows per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per side (median)")
    parser.add_argument("--path", choices=["plain", "timescale", "all"], default="all")
    args = parser.parse_args()
    with database_server() as admin_url:
        for mode in storage_paths(admin_url, args.path):
            with scratch_database(admin_url, mode) as url:
                print(
                    json.dumps(asyncio.run(bench_path(url, mode, args.rows, args.runs))), flush=True
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
