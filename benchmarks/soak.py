"""Soak: 80 % of the maximum sustained rate for ``--minutes`` (10), memory and latency watched.

A private platform (the fault suite's: PostgreSQL with fsync on, Mosquitto, the API,
ingest with 2 workers) and a simulated fleet, half MQTT and half HTTP, one reading-set
per message. Without ``--rate`` a short ramp finds the maximum sustained rate first: steps
of ``--step-s`` (30) at rising rates, each passing when the fleet kept its schedule (98 %),
readings stayed fresh (visible in the API within 2 s at p95 over the step's second half)
and the ingest had stored every acknowledged reading within 10 s of the step's end. The
soak then runs at ``--share`` (0.8) of it, sampling the memory of every service process every
5 s (RSS; PostgreSQL: PSS summed over its processes) and the end-to-end latency (a
reading's time until the query API shows it) throughout; at the end every reading is
read back from the database and reconciled with what the fleet sent. Prints one JSON
line. Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import psycopg

from benchmarks.ingest_mqtt import accepted
from simulator import Endpoints, Fleet, Ledger, RunConfig, run_fleet
from simulator.api_client import QueryApi, StoredRow
from simulator.latency import LatencyProbe, percentile
from simulator.messages import ts_to_ms
from tests.faults.stack import ADMIN_KEY, Stack

_DEVICES = 1000
_RAMP = (250.0, 500.0, 750.0, 1000.0, 1250.0, 1500.0, 2000.0, 3000.0)
# A step is sustained only if readings stay fresh: visible within 2 s at p95.
_FRESH_P95_MS = 2000.0
_CATCH_UP_S = 10.0
_SAMPLE_S = 5.0
_ROWS_SQL = (
    "SELECT d.device_id, m.name, r.time FROM readings r"
    " JOIN devices d USING (device_key) JOIN metrics m USING (metric_key)"
    " WHERE d.device_id LIKE %s AND r.time >= %s AND r.time <= %s"
)


def _config(rate: float, duration_s: float, prefix: str) -> RunConfig:
    return RunConfig(
        devices=_DEVICES,
        rate=rate,
        duration_s=duration_s,
        protocols=("mqtt", "http"),
        prefix=prefix,
        seed=1,
        drain_s=_CATCH_UP_S,
        devices_per_connection=250,
    )


async def _step(stack: Stack, workdir: Path, rate: float, duration_s: float) -> dict[str, object]:
    """Run one ramp step; return its figures and whether the rate was sustained."""
    assert stack.api is not None
    assert stack.ingest is not None
    prefix = f"ramp{int(rate)}"
    ledger = Ledger()
    endpoints = Endpoints(stack.api.url, ADMIN_KEY, stack.ingest.url, stack.broker.url)
    before = await asyncio.to_thread(accepted, stack.ingest.url)
    async with QueryApi(stack.api.url, ADMIN_KEY) as api, LatencyProbe(api) as probe:
        fleet = Fleet.load(workdir / f"{prefix}.json")
        config = _config(rate, duration_s, prefix)
        run = await run_fleet(config, endpoints, fleet, ledger, api=api, probe=probe)
    # The second half of the step: a backlog building up shows there first.
    late_ms = [s * 1000 for s in probe.samples_s[len(probe.samples_s) // 2 :]]
    deadline = time.monotonic() + _CATCH_UP_S
    stored = 0
    while time.monotonic() < deadline:
        stored = await asyncio.to_thread(accepted, stack.ingest.url) - before
        if stored >= ledger.readings_acked:
            break
        await asyncio.sleep(0.5)
    on_schedule = ledger.messages_acked >= 0.98 * rate * duration_s
    kept_up = run.drained and stored >= ledger.readings_acked
    p95_ms = _p(late_ms, 0.95)
    fresh = p95_ms is not None and p95_ms <= _FRESH_P95_MS
    return {
        "rate_sets_s": rate,
        "messages_acked": ledger.messages_acked,
        "readings_acked": ledger.readings_acked,
        "stored_within_10_s": stored,
        "latency_p95_ms_second_half": p95_ms,
        "sustained": on_schedule and kept_up and fresh,
    }


async def find_max_rate(stack: Stack, workdir: Path, step_s: float) -> tuple[float, list[object]]:
    """Ramp up until a step is not sustained; return the last sustained rate and the steps."""
    steps: list[object] = []
    best = 0.0
    for rate in _RAMP:
        step = await _step(stack, workdir, rate, step_s)
        steps.append(step)
        print(f"  ramp {rate:,.0f} reading-sets/s: {step}", file=sys.stderr)
        if not step["sustained"]:
            break
        best = rate
    if best == 0:
        raise RuntimeError(f"not even {_RAMP[0]:,.0f} reading-sets/s was sustained: {steps}")
    return best, steps


def _service_processes(stack: Stack) -> dict[str, list[psutil.Process]]:
    """The processes of each service, by role."""
    assert stack.ingest is not None
    assert stack.ingest.child is not None
    assert stack.api is not None
    assert stack.api.child is not None
    out: dict[str, list[psutil.Process]] = {
        "ingest_supervisor": [psutil.Process(stack.ingest.child.pid)],
        "api": [psutil.Process(stack.api.child.pid)],
    }
    for i, pid in enumerate(sorted(stack.ingest.worker_pids())):
        out[f"ingest_worker_{i}"] = [psutil.Process(pid)]
    pid_file = stack.postgres.data_dir / "pgdata" / "postmaster.pid"
    postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
    out["postgres"] = [postmaster]  # with its children, counted when sampled
    config = str(stack.broker.config_file)
    out["mosquitto"] = [
        p for p in psutil.process_iter(["cmdline"]) if config in (p.info["cmdline"] or [])
    ]
    return out


def _rss_mb(processes: dict[str, list[psutil.Process]]) -> dict[str, float]:
    """RSS per role in MiB; PostgreSQL: PSS of the postmaster and its children, summed.

    Each backend's RSS counts the shared buffers it has touched, so a sum of RSS would
    grow with the number of backends that touched them; PSS shares them out instead.
    """
    out: dict[str, float] = {}
    for role, procs in processes.items():
        total = 0
        for proc in procs:
            try:
                if role == "postgres":
                    family = [proc, *proc.children(recursive=True)]
                    total += sum(member.memory_full_info().pss for member in family)
                else:
                    total += proc.memory_info().rss
            except psutil.Error:
                continue
        out[role] = round(total / 2**20, 1)
    return out


def _stored_rows(db_url: str, prefix: str, first_ms: int, last_ms: int) -> Iterator[StoredRow]:
    """Every stored reading of the soak fleet, straight from the database."""
    first = datetime.fromtimestamp(first_ms / 1000, UTC)
    last = datetime.fromtimestamp(last_ms / 1000, UTC)
    with (
        psycopg.connect(db_url) as conn,
        conn.cursor(name="soak_rows") as cur,
    ):
        cur.itersize = 50_000
        cur.execute(_ROWS_SQL, [f"{prefix}-%", first, last])
        for device_id, metric, moment in cur:
            yield StoredRow(device_id, metric, ts_to_ms(moment))


async def soak(stack: Stack, workdir: Path, rate: float, minutes: float) -> dict[str, object]:
    """Run the soak at ``rate`` for ``minutes``; return its figures."""
    assert stack.api is not None
    assert stack.ingest is not None
    ledger = Ledger()
    endpoints = Endpoints(stack.api.url, ADMIN_KEY, stack.ingest.url, stack.broker.url)
    processes = _service_processes(stack)
    rss: list[dict[str, float]] = []
    minute_marks: list[int] = []
    async with (
        QueryApi(stack.api.url, ADMIN_KEY) as api,
        LatencyProbe(api, max_samples=1_000_000) as probe,
    ):
        fleet = Fleet.load(workdir / "soak.json")
        running = asyncio.create_task(
            run_fleet(
                _config(rate, minutes * 60, "soak"), endpoints, fleet, ledger, api=api, probe=probe
            )
        )
        started = time.monotonic()
        while not running.done():
            rss.append(await asyncio.to_thread(_rss_mb, processes))
            elapsed = time.monotonic() - started
            if elapsed >= 60 * (len(minute_marks) + 1):
                minute_marks.append(len(probe.samples_s))
            await asyncio.wait({running}, timeout=_SAMPLE_S)
        run = running.result()
        if len(minute_marks) < int(minutes):
            minute_marks.append(len(probe.samples_s))
        samples_ms = [s * 1000 for s in probe.samples_s]
    bounds = [0, *minute_marks[: int(minutes)]]
    per_minute = [samples_ms[a:b] for a, b in itertools.pairwise(bounds)]
    # The ingest may still be committing the last acknowledged MQTT messages.
    deadline = time.monotonic() + 60
    while await asyncio.to_thread(accepted, stack.ingest.url) < ledger.readings_acked:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    first, last = ledger.first_ts_ms, ledger.last_ts_ms
    assert first is not None
    assert last is not None
    result = await asyncio.to_thread(
        lambda: ledger.reconcile(_stored_rows(stack.db_url, "soak", first, last))
    )
    roles = rss[0].keys()
    return {
        "rate_sets_s": rate,
        "minutes": minutes,
        "elapsed_s": round(run.elapsed_s, 1),
        "messages_acked": ledger.messages_acked,
        "readings_sent": ledger.readings_sent,
        "readings_acked": ledger.readings_acked,
        "readings_s": round(ledger.readings_acked / run.elapsed_s, 1),
        "readings_stored": result.stored,
        "lost": result.lost,
        "duplicated": result.duplicates,
        "unexpected": result.unexpected,
        "latency_p95_ms_per_minute": [_p(m, 0.95) for m in per_minute],
        "latency_p50_ms_per_minute": [_p(m, 0.5) for m in per_minute],
        "latency_samples": len(samples_ms),
        "latency_timeouts": probe.timeouts,
        "rss_mb": {
            role: {
                "first": rss[0][role],
                "last": rss[-1][role],
                "max": max(sample[role] for sample in rss),
            }
            for role in roles
        },
    }


def _p(values: list[float], share: float) -> float | None:
    value = percentile(values, share)
    return None if value is None else round(value, 1)


async def _measure(stack: Stack, workdir: Path, args: argparse.Namespace) -> dict[str, object]:
    steps: list[object] = []
    if args.rate is None:
        max_rate, steps = await find_max_rate(stack, workdir, args.step_s)
    else:
        max_rate = args.rate
    rate = round(max_rate * args.share)
    print(f"  soak at {rate:,} reading-sets/s for {args.minutes:g} min", file=sys.stderr)
    figures = await soak(stack, workdir, rate, args.minutes)
    return {
        "benchmark": "soak",
        "path": "plain",
        "workers": 2,
        "devices": _DEVICES,
        "max_rate_sets_s": max_rate,
        "ramp": steps,
        **figures,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> int:
    """Parse arguments, run the ramp (unless ``--rate``) and the soak, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rate", type=float, help="maximum sustained reading-sets/s (default: ramp to find it)"
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="soak length (%(default)s)")
    parser.add_argument("--share", type=float, default=0.8, help="of the maximum (%(default)s)")
    parser.add_argument("--step-s", type=float, default=30.0, help="ramp step (%(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, Stack(Path(tmp)) as stack:
        figures = asyncio.run(_measure(stack, Path(tmp), args))
    print(json.dumps(figures))
    return 0 if figures["lost"] == 0 and figures["duplicated"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
