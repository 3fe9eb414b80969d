"""A year of history: storage bytes a reading and query latency over long ranges.

Loads ``--days`` (365) of 1 Hz data of one metric for ``--devices`` (1) devices, generated
in the database (``INSERT … SELECT generate_series``, a day of a device a statement: the
loader's job is to make a year exist in minutes, not to measure intake; the intake
benchmarks do that). The values are a daily sine with noise, two decimals, as a sensor
reports them. Then, as the platform's own jobs would: the rollups are brought up to date
(plain: the dirty-minute refresh, a day at a time; TimescaleDB: the continuous aggregates),
and on TimescaleDB every chunk older than ``COMPRESS_AFTER_DAYS`` is compressed.

Measured per storage path, through the query API (p95 over ``--runs`` requests):

- ``year_1d``: the whole range as 1-day buckets (avg, min, max, count);
- ``days30_1h``: the last 30 days as 1-hour buckets;
- ``raw_hour_11_months``: the raw readings of one hour 330 days ago (3,600 rows);

and the bytes on disk: raw readings a reading (compressed on TimescaleDB), and each rollup
tier a device-metric-day. Prints one JSON line per storage path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiohttp
import psycopg
from psycopg.rows import TupleRow

from benchmarks.api_query import summary, timed
from benchmarks.common import (
    API_KEY,
    api_server,
    database_server,
    pause_aggregate_jobs,
    scratch_database,
    storage_paths,
)
from benchmarks.tier_sizes import tier_bytes
from ingest.maintenance import create_day_partitions, refresh_rollups
from ingest.settings import StorageSettings

Mode = Literal["plain", "timescale"]
METRIC = "power"
DAY = timedelta(days=1)
TARGET_YEAR_1D_P95_MS = 100.0

_GENERATE_DAY = """
INSERT INTO readings (time, device_key, metric_key, value)
SELECT t, %(device)s, %(metric)s,
       round((20 + 5 * sin(extract(epoch FROM t) * pi() / 43200) + random())::numeric, 2)
FROM generate_series(%(start)s::timestamptz, %(start)s::timestamptz + interval '1 day'
                     - interval '1 second', interval '1 second') AS t
"""
_DIRTY_DAY = """
INSERT INTO rollup_dirty (minute)
SELECT generate_series(%(start)s::timestamptz, %(start)s::timestamptz + interval '1 day'
                       - interval '1 minute', interval '1 minute')
"""


def _z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


async def _keys(conn: psycopg.AsyncConnection[TupleRow], devices: int) -> tuple[list[int], int]:
    cur = await conn.execute(
        "INSERT INTO devices (device_id) SELECT 'hist-' || lpad(g::text, 5, '0')"
        " FROM generate_series(0, %s - 1) g RETURNING device_key",
        [devices],
    )
    device_keys = [int(row[0]) for row in await cur.fetchall()]
    cur = await conn.execute(
        "INSERT INTO metrics (name) VALUES (%s) RETURNING metric_key", [METRIC]
    )
    row = await cur.fetchone()
    assert row is not None
    return device_keys, int(row[0])


async def load(url: str, mode: Mode, devices: int, start: datetime, days: int) -> dict[str, float]:
    """Write the history and bring the rollups up to date; seconds each step took."""
    timings: dict[str, float] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if mode == "timescale":
            await pause_aggregate_jobs(conn)
        device_keys, metric_key = await _keys(conn, devices)
        if mode == "plain":
            await create_day_partitions(conn, [(start + DAY * d).date() for d in range(days)])
        began = time.perf_counter()
        refresh_s = 0.0
        for d in range(days):
            day = start + DAY * d
            for key in device_keys:
                await conn.execute(
                    _GENERATE_DAY, {"device": key, "metric": metric_key, "start": day}
                )
            if mode == "plain":
                refreshed = time.perf_counter()
                await conn.execute(_DIRTY_DAY, {"start": day})
                await refresh_rollups(conn, day + DAY + timedelta(minutes=1))
                refresh_s += time.perf_counter() - refreshed
            if d % 30 == 29:
                print(f"    {mode}: {d + 1} of {days} days loaded", file=sys.stderr)
        if mode == "timescale":
            refreshed = time.perf_counter()
            for view in ("readings_1m", "readings_1h", "readings_1d"):
                await conn.execute(
                    "CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL)", [view]
                )
            refresh_s = time.perf_counter() - refreshed
            compressed = time.perf_counter()
            horizon = start + DAY * days - timedelta(days=StorageSettings().compress_after_days)
            await conn.execute(
                "SELECT count(compress_chunk(c, if_not_compressed => true))"
                " FROM show_chunks('readings', older_than => %s::timestamptz) c",
                [horizon],
            )
            timings["compress_s"] = round(time.perf_counter() - compressed, 1)
        timings["load_s"] = round(time.perf_counter() - began - refresh_s, 1)
        timings["refresh_s"] = round(refresh_s, 1)
        await conn.execute("VACUUM ANALYZE")
    return timings


async def sizes(url: str, mode: Mode, readings: int, device_days: int) -> dict[str, float]:
    """Bytes a raw reading, and bytes a device-metric-day of each rollup tier."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        raw, one_minute, one_hour, one_day = await tier_bytes(conn, mode)
    return {
        "raw_bytes_per_reading": round(raw / readings, 2),
        "raw_bytes_per_device_metric_day": round(raw / device_days),
        "rollup_1m_bytes_per_device_metric_day": round(one_minute / device_days),
        "rollup_1h_bytes_per_device_metric_day": round(one_hour / device_days),
        "rollup_1d_bytes_per_device_metric_day": round(one_day / device_days),
        "total_bytes": raw + one_minute + one_hour + one_day,
    }


async def bench(url: str, mode: Mode, devices: int, days: int, runs: int) -> dict[str, Any]:
    """Load, measure the bytes, then time the three queries through the API."""
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - DAY * days
    line: dict[str, Any] = {"benchmark": "history", "path": mode, "devices": devices, "days": days}
    line |= await load(url, mode, devices, start, days)
    readings = devices * days * 86_400
    line["readings"] = readings
    line |= await sizes(url, mode, readings, devices * days)

    def buckets(expected: int) -> Callable[[Any], None]:
        def check(body: Any) -> None:
            points = len(body["series"][0]["points"])
            if points != expected:
                raise RuntimeError(f"{points} buckets, not {expected}, from {body['source']}")
            line.setdefault("sources", {})[expected] = body["source"]

        return check

    def raw_hour(body: Any) -> None:
        if len(body["readings"]) != 3_600:
            raise RuntimeError(f"{len(body['readings'])} raw readings, not 3,600")

    hour = start + DAY * (days - 330) if days > 330 else start
    base = f"/v1/devices/hist-00000/readings?metric={METRIC}"
    month = end - DAY * min(30, days)
    cases: list[tuple[str, str, Callable[[Any], None]]] = [
        (
            "year_1d",
            f"{base}&bucket=1d&agg=avg,min,max,count&start={_z(start)}&end={_z(end)}",
            buckets(days),
        ),
        (
            "days30_1h",
            f"{base}&bucket=1h&agg=avg,min,max,count&start={_z(month)}&end={_z(end)}",
            buckets(min(30, days) * 24),
        ),
        (
            "raw_hour_11_months",
            f"{base}&limit=3600&start={_z(hour)}&end={_z(hour + timedelta(hours=1))}",
            raw_hour,
        ),
    ]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with api_server(url) as server, aiohttp.ClientSession(server, headers=headers) as session:
        for name, path, check in cases:
            line[name] = summary(await timed(session, path, runs, check))
            print(f"  {mode} {name}: {line[name]}", file=sys.stderr)
    line["target_met"] = line["year_1d"]["p95_ms"] <= TARGET_YEAR_1D_P95_MS
    return line


def main() -> int:
    """Run on each storage path available; one JSON line each."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    # One device-metric is 31.5 million readings a year; the per-device queries and the
    # bytes a reading do not depend on how many others share the tables.
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=40, help="timed requests per query")
    parser.add_argument("--path", choices=["plain", "timescale", "all"], default="all")
    args = parser.parse_args()
    with database_server() as admin_url:
        for mode in storage_paths(admin_url, args.path):
            with scratch_database(admin_url, mode) as url:
                line = asyncio.run(bench(url, mode, args.devices, args.days, args.runs))
                print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
