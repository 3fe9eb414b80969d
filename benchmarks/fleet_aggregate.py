"""Fleet aggregates by tag: p50/p95 of a day of 1-hour buckets across 1,000 devices.

``GET /v1/aggregate?metric=temperature&tag=site:berlin&bucket=1h&agg=avg,max,count
&group_by=room`` over the last whole day, served from the 1-hour rollup (refreshed first).
2,000 devices are registered, 1,000 of them tagged ``site:berlin`` in 10 rooms, each with a
reading a minute for a day and two hours. Data is loaded through the batch writer. Reads
``DATABASE_URL`` (a role that may create databases); without it, starts a private
PostgreSQL. One JSON line per storage path; the target is p95 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiohttp
import psycopg

from benchmarks.api_query import summary, timed
from benchmarks.common import (
    API_KEY,
    api_server,
    database_server,
    pause_aggregate_jobs,
    refresh_all,
    scratch_database,
    storage_paths,
)
from ingest.records import ReadingSet
from ingest.writer import BatchWriter

TAGGED = 1_000
REGISTERED = 2_000
ROOMS = 10
TARGET_P95_MS = 100
BATCH_SETS = 5_000


def _z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


async def load(url: str, mode: Literal["plain", "timescale"], now: datetime) -> int:
    """Register the fleet and write a reading a minute per device; return the rows."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if mode == "timescale":
            await pause_aggregate_jobs(conn)  # they would race the refresh and the timing
        await conn.execute(
            "INSERT INTO devices (device_id, metadata)"
            " SELECT 'agg-' || lpad(g::text, 5, '0'), CASE WHEN g <= %s"
            " THEN jsonb_build_object('site', 'berlin', 'room', 'r' || (g %% %s))"
            " ELSE jsonb_build_object('site', 'paris') END"
            " FROM generate_series(1, %s) g",
            [TAGGED, ROOMS, REGISTERED],
        )
    minutes = 26 * 60
    start = now - timedelta(minutes=minutes)
    per_minute = BATCH_SETS // REGISTERED  # minutes a batch: whole minutes of every device
    async with BatchWriter(url, mode=mode, pool_min=2, pool_max=2) as writer:
        for first in range(0, minutes, per_minute):
            sets: list[ReadingSet] = [
                (d, start + timedelta(minutes=m), {"temperature": 20 + (d % 17) + m / 1000})
                for m in range(first, min(first + per_minute, minutes))
                for d in range(1, REGISTERED + 1)
            ]
            await writer.write(sets)
    await refresh_all(url, mode, now)
    return minutes * REGISTERED


async def bench(url: str, mode: Literal["plain", "timescale"], runs: int) -> dict[str, Any]:
    """Load, serve, and time the fleet aggregate."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    started = time.perf_counter()
    rows = await load(url, mode, now)
    load_s = time.perf_counter() - started
    end = now.replace(minute=0) - timedelta(hours=1)
    path = (
        "/v1/aggregate?metric=temperature&tag=site:berlin&bucket=1h&agg=avg,max,count"
        f"&group_by=room&start={_z(end - timedelta(days=1))}&end={_z(end)}"
    )

    def check(body: Any) -> None:
        groups = body["groups"]
        if body["source"] != "rollup_1h" or body["devices"] != TAGGED or len(groups) != ROOMS:
            raise RuntimeError(f"{body['source']}, {body['devices']} devices, {len(groups)}")
        if any(len(g["points"]) != 24 for g in groups):
            raise RuntimeError("a group has not 24 buckets")
        if sum(p["count"] for g in groups for p in g["points"]) != TAGGED * 24 * 60:
            raise RuntimeError("the counts do not add up to a reading a minute per device")

    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with api_server(url) as base, aiohttp.ClientSession(base, headers=headers) as session:
        figures = summary(await timed(session, path, runs, check))
    print(f"  {mode} fleet_aggregate_1day_1h: {figures}", file=sys.stderr)
    return {
        "benchmark": "fleet_aggregate",
        "path": mode,
        "devices": TAGGED,
        "registered": REGISTERED,
        "rows": rows,
        "load_s": round(load_s, 1),
        "day_1h": figures,
        "target_p95_ms": TARGET_P95_MS,
        "target_met": figures["p95_ms"] <= TARGET_P95_MS,
    }


def main() -> int:
    """Run the benchmark on each storage path available."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=60, help="timed requests")
    parser.add_argument("--path", choices=["plain", "timescale", "all"], default="all")
    args = parser.parse_args()
    with database_server() as admin_url:
        for mode in storage_paths(admin_url, args.path):
            with scratch_database(admin_url, mode) as url:
                line = asyncio.run(bench(url, mode, args.runs))
                print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
