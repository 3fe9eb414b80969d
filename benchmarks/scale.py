"""Cost curves: what intake and queries cost as the registered fleet grows.

For each fleet size (100 registered devices as the baseline, then ``--sizes``, by default
1,000 / 10,000 / 100,000), in a fresh database:

- MQTT intake: the ingest (2 workers, default configuration) drains a QoS 1 backlog of
  ``max(size, --messages)`` 10-reading messages sent by every device in turn, so that at
  100,000 devices each message comes from a device the registry cache has not seen;
- HTTP intake: ``max(--requests, min(size, 20,000))`` requests of 10 reading-sets (40
  readings), device after device (so each of up to 20,000 devices authenticates once, a
  token the cache has not seen), 20 at a time; every response must be a 200 after commit;
- query latency (p95, and p50 beside it, over ``--queries`` requests): ``/v1/fleet``, a
  ``/v1/devices`` page of 100 with a status filter, the first ``/v1/latest`` page (1,000
  devices), and every panel of the Fleet overview dashboard run as Grafana sends it over
  the last 6 hours at a 30 s interval (the slowest panel is reported);
- migrate: the time ``migrate`` takes on the populated database (what every start pays).

The intake rates are reported as ratios to the 100-device rate of the same run (the machine
may be shared), and the ingest's CPU a message beside them. Prints one JSON line with every
run's figures and their medians; ``--plot PATH`` also draws the curves (matplotlib) into a
PNG.
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
from typing import Any, Literal

import aiohttp
import psycopg
from matplotlib.figure import Figure

from benchmarks.api_query import timed
from benchmarks.common import (
    API_KEY,
    api_server,
    broker,
    count_rows,
    database_server,
    default_path,
    refresh_all,
    register_many,
    scratch_database,
)
from benchmarks.ingest_http import bodies, drive
from benchmarks.ingest_mqtt import READINGS_PER_MESSAGE, ingest_rate
from benchmarks.writer import METRICS
from dashboards import FLEET_OVERVIEW
from dashboards.sql import SqlQuery
from ingest.migrate import migrate
from ingest.settings import StorageSettings
from tests.dashboards.grafana import TimeRange
from tests.dashboards.runner import Grafana, panels, run_sql
from tests.support.processes import ServiceProcess, ingest_env

BASELINE = 100
SIZES = (1_000, 10_000, 100_000)
HTTP_SETS = 10  # reading-sets a request, x 4 metrics
HTTP_CONCURRENCY = 20
# Each request from a device not seen before, up to this many (the token lookups' cost).
HTTP_DISTINCT_MAX = 20_000
INTAKE_TARGET = 0.8  # intake at the largest fleet, as a share of the 100-device rate
P95_TARGET_MS = 200.0
QUERIES = ("fleet", "devices_status_page", "latest_page", "fleet_dashboard_slowest_panel")
Mode = Literal["plain", "timescale"]


def p95(times: list[float]) -> float:
    """The 95th percentile in milliseconds, rounded for printing."""
    return round(statistics.quantiles(times, n=20, method="inclusive")[18], 1)


def mqtt_intake(
    url: str, mqtt_url: str, size: int, messages: int, log_dir: Path
) -> tuple[float, float]:
    """Messages/s of the ingest draining a backlog every device sent; its CPU µs a message."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    drain = ingest_rate(
        url, mqtt_url, messages, workers=2, start=start, log_dir=log_dir, devices=size
    )
    return drain.msg_s, drain.cpu_us_msg


def http_intake(url: str, tokens: list[str], requests: int, log_dir: Path) -> float:
    """Readings/s of ``requests`` HTTP requests, device after device, every one committed."""
    env = ingest_env(
        url,
        "none",
        http_rate_per_device="1000",
        http_burst_per_device="1000",
        db_pool_max="4",
        flush_interval_s="0.05",
    )
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    work = bodies(len(tokens), requests, start, sets=HTTP_SETS)
    before = count_rows(url)
    with ServiceProcess("ingest", env, log_dir / "ingest-http.log", workers=2) as ingest:
        rate = asyncio.run(drive(ingest.url, tokens, work, HTTP_CONCURRENCY, sets=HTTP_SETS))
    stored = count_rows(url) - before
    if stored != requests * HTTP_SETS * len(METRICS):
        raise RuntimeError(f"HTTP intake stored {stored} readings, not {requests * 40}")
    return rate


async def _panel_times(url: str, mode: Mode, runs: int) -> dict[str, list[float]]:
    """Milliseconds per run of each Fleet overview panel's SQL over the last 6 hours."""
    now = datetime.now(UTC)
    times: dict[str, list[float]] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        grafana = Grafana(conn, mode == "timescale", TimeRange(now - timedelta(hours=6), now))
        await grafana.resolve(FLEET_OVERVIEW, {})
        for panel in panels(FLEET_OVERVIEW):
            for target in panel.targets or []:
                if not isinstance(target, SqlQuery):
                    continue
                for values in grafana.scopes(panel)[:1]:
                    interval = grafana.interval(panel, timedelta(seconds=30), values)
                    sql = grafana.expand(target.raw_sql, interval, values)
                    samples = []
                    for i in range(runs + 2):
                        started = time.perf_counter()
                        await run_sql(conn, sql)
                        if i >= 2:
                            samples.append((time.perf_counter() - started) * 1000)
                    times[f"{panel.title}/{target.ref_id}"] = samples
    return times


async def query_latency(url: str, mode: Mode, runs: int) -> dict[str, Any]:
    """p95 of the fleet endpoints and of the Fleet overview's slowest panel."""
    await refresh_all(url, mode, datetime.now(UTC))
    cases = {
        "fleet": "/v1/fleet",
        "devices_status_page": "/v1/devices?status=online&limit=100",
        "latest_page": "/v1/latest",
    }
    out: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with api_server(url) as base, aiohttp.ClientSession(base, headers=headers) as session:
        for name, path in cases.items():
            times = await timed(session, path, runs, lambda _body: None)
            out[name] = p95(times)
            out[f"{name}_p50"] = round(statistics.median(times), 1)
    panel_times = await _panel_times(url, mode, runs)
    slowest = max(panel_times, key=lambda name: p95(panel_times[name]))
    out["fleet_dashboard_slowest_panel"] = p95(panel_times[slowest])
    out["fleet_dashboard_slowest_panel_p50"] = round(statistics.median(panel_times[slowest]), 1)
    out["slowest_panel"] = slowest
    return out


def migrate_time(url: str, mode: Mode) -> float:
    """Seconds ``migrate`` takes on the populated database."""
    started = time.perf_counter()
    asyncio.run(migrate(url, StorageSettings(storage_mode=mode)))
    return round(time.perf_counter() - started, 3)


def one_size(
    admin: str, mqtt_url: str, mode: Mode, size: int, *, args: argparse.Namespace, log_dir: Path
) -> dict[str, Any]:
    """Every figure for one fleet size, in a database of its own."""
    with scratch_database(admin, mode) as url:
        tokens = register_many(url, size)
        mqtt_msg_s, mqtt_cpu = mqtt_intake(url, mqtt_url, size, max(size, args.messages), log_dir)
        requests = max(args.requests, min(size, HTTP_DISTINCT_MAX))
        http_rows_s = http_intake(url, tokens, requests, log_dir)
        figures: dict[str, Any] = {
            "mqtt_msg_s": round(mqtt_msg_s, 1),
            # Steadier than the rate on a shared machine.
            "mqtt_cpu_us_msg": round(mqtt_cpu, 1),
            "http_rows_s": round(http_rows_s, 1),
        }
        figures |= asyncio.run(query_latency(url, mode, args.queries))
        figures["migrate_s"] = migrate_time(url, mode)
    print(f"  {size:,} devices: {figures}", file=sys.stderr)
    return figures


def plot(line: dict[str, Any], path: Path) -> None:
    """Draw intake ratios and query p95 against the fleet size (log scale) into ``path``."""
    sizes = line["sizes"]
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    for name, label in (("mqtt", "MQTT msg/s"), ("http", "HTTP readings/s")):
        left.plot(sizes, line["ratio_median"][name], marker="o", label=label)
    # Rates move with whatever else runs; the CPU a message much less.
    cpu = line["mqtt_cpu_us_msg_median"]
    left.plot(
        sizes, [cpu[0] / us for us in cpu], linestyle=":", marker="o", label="MQTT, by CPU a msg"
    )
    left.axhline(INTAKE_TARGET, color="grey", linestyle="--", label="target")
    left.set(xscale="log", xlabel="registered devices", ylabel=f"rate / {BASELINE}-device rate")
    left.set_ylim(bottom=0)
    left.legend()
    left.set_title("Intake")
    for name in QUERIES:
        right.plot(sizes, line["p95_ms_median"][name], marker="o", label=name)
    right.axhline(P95_TARGET_MS, color="grey", linestyle="--", label="target")
    right.set(xscale="log", yscale="log", xlabel="registered devices", ylabel="p95 ms")
    right.legend(fontsize="small")
    right.set_title("Queries")
    fig.suptitle(f"Cost against fleet size ({line['path']}, median of {line['runs']} runs)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    """Measure every size in each run; print one JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--messages", type=int, default=20_000, help="least MQTT backlog")
    parser.add_argument("--requests", type=int, default=5_000, help="least HTTP requests")
    parser.add_argument("--queries", type=int, default=40, help="timed requests per query")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--plot", type=Path, help="also draw the curves into this PNG")
    args = parser.parse_args()
    sizes = [BASELINE, *args.sizes]
    runs: list[dict[int, dict[str, Any]]] = []
    with database_server() as admin, broker() as mqtt_url, tempfile.TemporaryDirectory() as tmp:
        mode = default_path(admin)
        for run in range(args.runs):
            print(f"  run {run + 1} of {args.runs}", file=sys.stderr)
            runs.append(
                {
                    size: one_size(admin, mqtt_url, mode, size, args=args, log_dir=Path(tmp))
                    for size in sizes
                }
            )
    ratios = {
        name: [[r[size][key] / r[BASELINE][key] for r in runs] for size in sizes]
        for name, key in (("mqtt", "mqtt_msg_s"), ("http", "http_rows_s"))
    }
    line: dict[str, Any] = {
        "benchmark": "scale",
        "path": mode,
        "runs": args.runs,
        "sizes": sizes,
        "readings_per_mqtt_message": READINGS_PER_MESSAGE,
        "readings_per_http_request": HTTP_SETS * len(METRICS),
        "by_run": [{str(size): figures for size, figures in r.items()} for r in runs],
        "ratio": {k: [[round(x, 3) for x in v] for v in vs] for k, vs in ratios.items()},
        "ratio_median": {
            k: [round(statistics.median(v), 3) for v in vs] for k, vs in ratios.items()
        },
        "p95_ms_median": {
            q: [statistics.median(r[size][q] for r in runs) for size in sizes] for q in QUERIES
        },
        "mqtt_cpu_us_msg_median": [
            statistics.median(r[size]["mqtt_cpu_us_msg"] for r in runs) for size in sizes
        ],
        "migrate_s_median": [
            statistics.median(r[size]["migrate_s"] for r in runs) for size in sizes
        ],
    }
    intake_met = all(line["ratio_median"][k][-1] >= INTAKE_TARGET for k in ratios)
    queries_met = all(line["p95_ms_median"][q][-1] <= P95_TARGET_MS for q in QUERIES)
    line["targets_met"] = intake_met and queries_met
    print(json.dumps(line), flush=True)
    if args.plot is not None:
        plot(line, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
