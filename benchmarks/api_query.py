"""Query API latency: p50/p95 of three queries over HTTP, one JSON line per storage path.

(a) one day of 1-second data of one device as 1-minute buckets, (b) 30 days of it as
1-hour buckets (both served from the rollups, which are refreshed first), (c) latest values
of 10,000 devices in one request (``GET /v1/latest?limit=10000``); (c1) the per-device
``/latest`` is reported beside it. Data is loaded through the batch writer. Reads
``DATABASE_URL`` (a role that may create databases); without it, starts a private PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiohttp
import psycopg

from benchmarks.common import (
    API_KEY,
    api_server,
    database_server,
    pause_aggregate_jobs,
    refresh_all,
    scratch_database,
    storage_paths,
)
from ingest.records import DeviceUpdate, ReadingSet
from ingest.writer import BatchWriter

FLEET = 10_000
FLEET_METRICS = ("temperature", "humidity", "pressure", "voltage")
BATCH_SETS = 5_000


def _z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


async def load(url: str, mode: Literal["plain", "timescale"], days: int, now: datetime) -> None:
    """One device at 1 Hz for ``days`` and 2 hours; 10,000 devices, 4 metrics, 5 readings each."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if mode == "timescale":
            # They would also compete with the timed requests.
            await pause_aggregate_jobs(conn)
        await conn.execute(
            "INSERT INTO devices (device_id) SELECT 'dev-' || lpad(g::text, 5, '0')"
            " FROM generate_series(0, %s) g",
            [FLEET],
        )
    # Two hours more than asked: (b) ends on the last whole hour at least five minutes
    # ago, and its first hour must hold data too.
    total = days * 86_400 + 7_200
    start = now - timedelta(seconds=total)
    async with BatchWriter(url, mode=mode, pool_min=2, pool_max=2) as writer:
        for first in range(0, total, BATCH_SETS):
            sets: list[ReadingSet] = [
                (1, start + timedelta(seconds=i), {"temperature": 20 + (i % 600) / 100})
                for i in range(first, min(first + BATCH_SETS, total))
            ]
            await writer.write(sets, [DeviceUpdate(1, sets[-1][1])])
        for first in range(2, FLEET + 2, 1_000):
            devices = range(first, min(first + 1_000, FLEET + 2))
            fleet_sets: list[ReadingSet] = [
                (
                    d,
                    now - timedelta(seconds=10 * k + d % 7),
                    dict.fromkeys(FLEET_METRICS, d + k / 10),
                )
                for d in devices
                for k in range(5)
            ]
            updates = [DeviceUpdate(d, now - timedelta(seconds=d % 7)) for d in devices]
            await writer.write(fleet_sets, updates)
    await refresh_all(url, mode, now)


async def timed(
    session: aiohttp.ClientSession, url: str, runs: int, check: Callable[[Any], None]
) -> list[float]:
    """Milliseconds per request, to the body's last byte, after two warm-up requests.

    The client's own JSON parsing (about 30 ms for the 3 MB fleet page) is left out of the
    figure: it is the consumer's cost, not the API's, and the server shares this process.
    """
    times = []
    for i in range(runs + 2):
        started = time.perf_counter()
        async with session.get(url) as r:
            raw = await r.read()
        elapsed = (time.perf_counter() - started) * 1000
        body = json.loads(raw)
        if r.status != 200:
            raise RuntimeError(f"{url}: {r.status} {body}")
        check(body)
        if i >= 2:
            times.append(elapsed)
    return times


def summary(times: list[float]) -> dict[str, float]:
    """p50 and p95 in milliseconds."""
    cuts = statistics.quantiles(times, n=20, method="inclusive")
    return {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(cuts[18], 1)}


async def bench(
    url: str, mode: Literal["plain", "timescale"], days: int, runs: int
) -> dict[str, Any]:
    """Load, serve, and time the three queries."""
    now = datetime.now(UTC).replace(microsecond=0)
    started = time.perf_counter()
    await load(url, mode, days, now)
    load_s = time.perf_counter() - started
    end = now.replace(second=0) - timedelta(minutes=5)
    results: dict[str, Any] = {"benchmark": "api_query", "path": mode, "load_s": round(load_s, 1)}

    def buckets(expected: int, source: str) -> Callable[[Any], None]:
        def check(body: Any) -> None:
            points = len(body["series"][0]["points"])
            if points != expected or body["source"] != source:
                raise RuntimeError(f"{points} points from {body['source']}")

        return check

    def fleet(body: Any) -> None:
        if len(body["devices"]) != FLEET or not body["devices"][0]["values"]:
            raise RuntimeError("fleet page incomplete")

    cases: list[tuple[str, str, int, Callable[[Any], None]]] = [
        (
            "a_1day_1m",
            (
                "/v1/devices/dev-00000/readings?metric=temperature&bucket=1m"
                f"&agg=avg,min,max,count&start={_z(end - timedelta(days=1))}&end={_z(end)}"
            ),
            runs,
            buckets(1440, "rollup_1m"),
        ),
        (
            "b_30days_1h",
            (
                "/v1/devices/dev-00000/readings?metric=temperature&bucket=1h"
                f"&agg=avg,min,max,count&start={_z(end.replace(minute=0) - timedelta(days=days))}"
                f"&end={_z(end.replace(minute=0))}"
            ),
            runs,
            buckets(days * 24, "rollup_1h"),
        ),
        ("c_latest_10000_devices", "/v1/latest?limit=10000", max(10, runs // 3), fleet),
        ("c1_latest_one_device", "/v1/devices/dev-05000/latest", runs, lambda _body: None),
    ]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with api_server(url) as base, aiohttp.ClientSession(base, headers=headers) as session:
        for name, path, n, check in cases:
            results[name] = summary(await timed(session, path, n, check))
            print(f"  {mode} {name}: {results[name]}", file=sys.stderr)
    results["targets_met"] = (
        results["a_1day_1m"]["p95_ms"] <= 50
        and results["b_30days_1h"]["p95_ms"] <= 50
        and results["c_latest_10000_devices"]["p95_ms"] <= 200
    )
    return results


def main() -> int:
    """Run the benchmark on each storage path available."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="days of 1 Hz data for (b)")
    parser.add_argument("--runs", type=int, default=60, help="timed requests per query")
    parser.add_argument("--path", choices=["plain", "timescale", "all"], default="all")
    args = parser.parse_args()
    with database_server() as admin_url:
        for mode in storage_paths(admin_url, args.path):
            with scratch_database(admin_url, mode) as url:
                line = asyncio.run(bench(url, mode, args.days, args.runs))
                print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
