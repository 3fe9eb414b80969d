"""HTTP intake rows/s against raw binary COPY of the same rows, side by side.

Concurrent devices POST 1,000-reading batches (250 reading-sets x 4 metrics, bodies
serialized before the clock starts) to an ingest with ``--workers`` workers; each response
arrives after commit. Raw COPY writes the same rows in 1,000-row transactions into the same
table of a twin database. Prints one JSON line with medians of ``--runs`` and the median of
the paired ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import psycopg

from benchmarks.common import (
    count_rows,
    database_server,
    default_path,
    register_devices,
    scratch_database,
)
from benchmarks.writer import METRICS, run_raw_copy
from ingest.records import ReadingSet
from tests.support.processes import ServiceProcess, ingest_env

SETS_PER_REQUEST = 250  # x 4 metrics = 1,000 readings


def bodies(
    devices: int, requests: int, start: datetime, sets: int = SETS_PER_REQUEST
) -> list[tuple[int, bytes]]:
    """(device index, JSON body of ``sets`` reading-sets) for each request, device after device."""
    out = []
    for r in range(requests):
        device, slot = r % devices, r // devices
        base = start + timedelta(seconds=slot * sets)
        body = [
            {
                "ts": (base + timedelta(seconds=k)).isoformat(),
                "values": {m: float(k % 97) + i / 10 for i, m in enumerate(METRICS)},
            }
            for k in range(sets)
        ]
        out.append((device, json.dumps(body).encode()))
    return out


async def drive(
    url: str,
    tokens: list[str],
    work: list[tuple[int, bytes]],
    concurrency: int,
    sets: int = SETS_PER_REQUEST,
) -> float:
    """Rows/s of all requests (``sets`` reading-sets each), ``concurrency`` at a time.

    Every response must be a 200.
    """
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while not queue.empty():
                device, body = queue.get_nowait()
                headers = {
                    "Authorization": f"Bearer {tokens[device]}",
                    "Content-Type": "application/json",
                }
                async with session.post(f"{url}/v1/telemetry", data=body, headers=headers) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")
                    await resp.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(work) * sets * len(METRICS) / elapsed


def as_sets(work: list[tuple[int, bytes]]) -> list[list[ReadingSet]]:
    """The same readings as writer batches (device keys are 1-based in a fresh database)."""
    batches = []
    for device, body in work:
        items = json.loads(body)
        batches.append([(device + 1, datetime.fromisoformat(i["ts"]), i["values"]) for i in items])
    return batches


def main() -> int:
    """Run the side-by-side measurement and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--requests", type=int, default=400, help="requests a run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    http_rates: list[float] = []
    raw_rates: list[float] = []
    with database_server() as admin, tempfile.TemporaryDirectory() as tmp:
        mode = default_path(admin)
        with scratch_database(admin, mode) as db_url, scratch_database(admin, mode) as raw_url:
            tokens = register_devices(db_url, args.devices)
            register_devices(raw_url, args.devices)
            with psycopg.connect(raw_url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO metrics (name) SELECT unnest(%s::text[])", [list(METRICS)]
                )
            env = ingest_env(
                db_url,
                "none",
                http_rate_per_device="1000",
                http_burst_per_device="1000",
                db_pool_max="4",
                flush_interval_s="0.05",
            )
            ingest = ServiceProcess("ingest", env, Path(tmp) / "ingest.log", workers=args.workers)
            with ingest:
                for run in range(args.runs):
                    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3 - run)
                    work = bodies(args.devices, args.requests, start)
                    before = count_rows(db_url)
                    http_rates.append(asyncio.run(drive(ingest.url, tokens, work, args.devices)))
                    stored = count_rows(db_url) - before
                    if stored != len(work) * SETS_PER_REQUEST * len(METRICS):
                        raise RuntimeError(f"stored {stored} rows, expected more")
                    raw_rates.append(asyncio.run(run_raw_copy(raw_url, as_sets(work))))
                    print(
                        f"  run {run + 1}: http {http_rates[-1]:,.0f} rows/s,"
                        f" raw copy {raw_rates[-1]:,.0f} rows/s",
                        file=sys.stderr,
                    )
    ratios = [h / r for h, r in zip(http_rates, raw_rates, strict=True)]
    print(
        json.dumps(
            {
                "benchmark": "ingest_http",
                "path": mode,
                "workers": args.workers,
                "devices": args.devices,
                "readings_per_request": SETS_PER_REQUEST * len(METRICS),
                "runs": args.runs,
                "http_rows_s": round(statistics.median(http_rates), 1),
                "raw_copy_rows_s": round(statistics.median(raw_rates), 1),
                "ratio": round(statistics.median(ratios), 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
