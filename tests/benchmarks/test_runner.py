"""The benchmark runner, in quick mode on its smallest benchmark, so that it cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.run_all import BENCHMARKS, table
from tests.support.db import DatabaseServer


def test_quick_run_writes_results_and_prints_the_table(
    pg_server: DatabaseServer, tmp_path: Path
) -> None:
    env = os.environ | {"DATABASE_URL": pg_server.admin_url, "BENCH_QUICK": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "writer", "--results-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert latest["quick"] is True
    [record] = latest["records"]
    assert record["benchmark"] == "writer"
    [line] = record["lines"]
    assert line["path"] == "plain"
    assert line["writer_rows_s"] > 0
    assert line["raw_copy_rows_s"] > 0
    stamped = [p for p in tmp_path.iterdir() if p.name.endswith("-quick.json")]
    assert len(stamped) == 1
    assert "| writer vs raw binary COPY (plain), rows/s |" in done.stdout
    assert latest["table"] in done.stdout


def test_a_failed_benchmark_is_a_row_and_a_miss() -> None:
    record = {"benchmark": "writer", "exit_status": 1, "lines": []}
    assert "| writer | failed (exit 1) | | | | **no** |" in table([record])


def test_every_benchmark_turns_its_line_into_rows() -> None:
    lines = {
        "writer": {"path": "plain", "writer_rows_s": 8e4, "raw_copy_rows_s": 1e5, "ratio": 0.8},
        "ingest_http": {
            "workers": 2,
            "http_rows_s": 4e4,
            "raw_copy_rows_s": 1e5,
            "ratio": 0.4,
        },
        "ingest_mqtt": {
            "msg_s_median": {
                "count_only": 8000.0,
                "hobby": 200.0,
                "ingest_2": 5000.0,
                "ingest_2_receipts": 4500.0,
                "ingest_2_shared": 5200.0,
                "ingest_1": 3000.0,
            },
            "cpu_us_msg_median": {"count_only": 100.0, "ingest_2": 90.0},
            "ratio_spread": {
                name: {"median": value, "min": value, "max": value}
                for name, value in (
                    ("ratio_2_workers", 0.625),
                    ("ratio_vs_hobby", 25.0),
                    ("ratio_receipts", 0.9),
                    ("ratio_default_vs_shared", 0.96),
                )
            },
            "lost": 0,
        },
        "e2e_latency": {
            "rate_msg_s": 2500.0,
            "p50_ms": 60.0,
            "p95_ms": 120.0,
            "p99_ms": 300.0,
            "lost": 0,
        },
        "cost_model": {"cpu_us_per_1000_readings": {"parse": 800.0, "validate": 5000.0}},
        "api_query": {
            "path": "plain",
            "a_1day_1m": {"p95_ms": 10.0},
            "b_30days_1h": {"p95_ms": 20.0},
            "c_latest_10000_devices": {"p95_ms": 400.0},
        },
        "device_footprint": {
            "rss_mb": 25.0,
            "cpu_pct_of_core": 1.0,
            "commits_per_batch": 1.0,
            "drain_readings_per_s": 9000,
        },
        "console_paint": {
            "path": "plain",
            "devices": 10_000,
            "fleet_fcp_ms": {"p50": 40.0, "max": 60.0},
            "fleet_data_ms": {"p50": 900.0, "max": 1200.0},
            "target_ms": 1000,
        },
        "scale": {
            "path": "plain",
            "sizes": [100, 100_000],
            "ratio_median": {"mqtt": [1.0, 0.85], "http": [1.0, 0.7]},
            "p95_ms_median": {"fleet": [5.0, 150.0], "latest_page": [3.0, 250.0]},
        },
        "history": {
            "path": "timescale",
            "days": 365,
            "year_1d": {"p95_ms": 120.0},
            "days30_1h": {"p95_ms": 20.0},
            "raw_hour_11_months": {"p95_ms": 30.0},
            "raw_bytes_per_reading": 2.5,
        },
        "alerts_eval": {
            "path": "plain",
            "devices": 10_000,
            "rules": 1_000,
            "pairs": 250_000,
            "firing": 900,
            "interval_s": 15.0,
            "first_s": 1.2,
            "median_s": 0.9,
        },
        "fleet_aggregate": {
            "path": "plain",
            "devices": 1000,
            "day_1h": {"p50_ms": 30.0, "p95_ms": 45.0},
            "target_p95_ms": 100,
        },
    }
    records = [
        {"benchmark": b.name, "exit_status": 0, "lines": [lines[b.name]]} for b in BENCHMARKS
    ]
    rows = table(records).splitlines()[2:]
    met = [row.strip().strip("|").split("|")[-1].strip() for row in rows]
    # writer, http (miss), mqtt vs count-only (miss), mqtt cpu (miss), receipts, default vs
    # shared, vs hobby, 1 worker (no target), latency, cost model (no target) x 2, api a, b,
    # c (miss), device rss, cpu, commits, drain, console first paint, console data (miss),
    # scale: mqtt, http (miss), fleet, latest (miss), history: year (miss), 30 days, raw
    # hour, bytes (no targets), alert evaluation, fleet aggregate
    assert met == [
        "yes", "**no**", "**no**", "**no**", "yes", "yes", "yes", "", "yes", "", "", "yes",
        "yes", "**no**", "yes", "yes", "yes", "yes", "yes", "**no**", "yes", "**no**", "yes",
        "**no**", "**no**", "", "", "", "yes", "yes",
    ]  # fmt: skip
