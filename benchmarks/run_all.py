"""Run every benchmark, keep their JSON lines, and print one table of figures and targets.

``python -m benchmarks`` (``make bench``) runs each benchmark as its own process (the
latency run finds the sustained rate itself, with its publisher running beside the
service, and publishes at half of it), and writes ``benchmarks/results/<UTC time>.json``
and ``latest.json``: every JSON line, the arguments, the time each took and the load average
around it (the machine may be shared: every ratio is measured side by side in one run).
``--quick`` (or ``BENCH_QUICK=1``) uses small sizes and one run each: a smoke test of the
machinery, not figures to publish. ``--only NAME`` runs a subset.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"

Line = dict[str, Any]
Row = tuple[str, str, str, str, str, str]  # figure, ours, baseline, ratio, target, met?


@dataclass(frozen=True)
class Benchmark:
    """One benchmark module, its arguments (full and quick) and how its lines become rows."""

    name: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    rows: Callable[[Line], list[Row]]


def _n(value: float, unit: str = "") -> str:
    return f"{value:,.0f}{unit}" if value >= 100 else f"{value:,.1f}{unit}"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _writer_rows(line: Line) -> list[Row]:
    ratio = line["ratio"]
    return [
        (
            f"writer vs raw binary COPY ({line['path']}), rows/s",
            _n(line["writer_rows_s"]),
            _n(line["raw_copy_rows_s"]),
            f"{ratio:.2f}",
            ">= 0.7",
            _met(ratio >= 0.7),
        )
    ]


def _http_rows(line: Line) -> list[Row]:
    ratio = line["ratio"]
    return [
        (
            f"HTTP intake, {line['workers']} workers, 1,000-reading batches, vs raw COPY, rows/s",
            _n(line["http_rows_s"]),
            _n(line["raw_copy_rows_s"]),
            f"{ratio:.2f}",
            ">= 0.5",
            _met(ratio >= 0.5),
        )
    ]


def _mqtt_rows(line: Line) -> list[Row]:
    rate, cpu, ratio = line["msg_s_median"], line["cpu_us_msg_median"], line["ratio_spread"]
    lost = line["lost"]

    def spread(name: str) -> str:
        r = ratio[name]
        return f"{r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f})"

    return [
        (
            "MQTT intake, 2 workers, vs count-only paho subscriber, msg/s (QoS 1, 10 readings)",
            _n(rate["ingest_2"]),
            _n(rate["count_only"]),
            spread("ratio_2_workers"),
            ">= 1.0, zero loss",
            _met(ratio["ratio_2_workers"]["median"] >= 1.0 and lost == 0),
        ),
        (
            "MQTT intake, 2 workers, CPU µs per message (all workers)",
            _n(cpu["ingest_2"]),
            _n(cpu["count_only"]),
            "",
            "<= 80",
            _met(cpu["ingest_2"] <= 80),
        ),
        (
            "MQTT intake, 2 workers, every message asking for a receipt, msg/s",
            _n(rate["ingest_2_receipts"]),
            _n(rate["ingest_2"]),
            spread("ratio_receipts"),
            ">= 0.8",
            _met(ratio["ratio_receipts"]["median"] >= 0.8),
        ),
        (
            "MQTT intake, 2 workers, default vs shared subscription, msg/s",
            _n(rate["ingest_2"]),
            _n(rate["ingest_2_shared"]),
            spread("ratio_default_vs_shared"),
            ">= 0.9",
            _met(ratio["ratio_default_vs_shared"]["median"] >= 0.9),
        ),
        (
            "MQTT intake, 2 workers, vs hobby subscriber (INSERT + commit a message), msg/s",
            _n(rate["ingest_2"]),
            _n(rate["hobby"]),
            spread("ratio_vs_hobby"),
            ">= 20",
            _met(ratio["ratio_vs_hobby"]["median"] >= 20),
        ),
        ("MQTT intake, 1 worker, msg/s", _n(rate["ingest_1"]), "", "", "", ""),
    ]


def _e2e_rows(line: Line) -> list[Row]:
    p95 = line["p95_ms"]
    return [
        (
            (
                f"end-to-end publish to commit at {_n(line['rate_msg_s'])} msg/s, p95 ms "
                f"(p50 {line['p50_ms']:.0f}, p99 {line['p99_ms']:.0f})"
            ),
            _n(p95),
            "",
            "",
            "<= 250, zero loss",
            _met(p95 <= 250 and line["lost"] == 0),
        )
    ]


_API_TARGETS = (
    ("a_1day_1m", "1 day as 1-minute buckets", 50),
    ("b_30days_1h", "30 days as 1-hour buckets", 50),
    ("c_latest_10000_devices", "latest of 10,000 devices", 200),
)


def _api_rows(line: Line) -> list[Row]:
    rows: list[Row] = []
    for key, what, target in _API_TARGETS:
        p95 = line[key]["p95_ms"]
        rows.append(
            (
                f"API {what} ({line.get('path', '?')}), p95 ms",
                _n(p95),
                "",
                "",
                f"<= {target}",
                _met(p95 <= target),
            )
        )
    return rows


_DEVICE_TARGETS = (
    ("rss_mb", "device agent peak RSS, MB", 30),
    ("cpu_pct_of_core", "device agent CPU at 1 Hz x 8 metrics, % of a core", 2),
    ("commits_per_batch", "device agent spool commits a stored batch", 1),
)


def _device_rows(line: Line) -> list[Row]:
    rows: list[Row] = [
        # A negative figure is one the run could not measure (no batch stored, say).
        (what, _n(line[key]), "", "", f"<= {limit}", _met(line[key] <= limit))
        if line[key] >= 0
        else (what, "n/a", "", "", f"<= {limit}", "**no**")
        for key, what, limit in _DEVICE_TARGETS
        if key in line
    ]
    drain = line["drain_readings_per_s"]
    rows.append(
        ("device backlog drain, readings/s", _n(drain), "", "", ">= 2,000", _met(drain >= 2000))
    )
    return rows


def _console_rows(line: Line) -> list[Row]:
    devices, path, target = line["devices"], line["path"], line["target_ms"]
    return [
        (
            (
                f"console {what}, {devices:,} devices ({path}), empty cache, slowest visit, ms"
                f" (p50 {_n(figure['p50'])})"
            ),
            _n(figure["max"]),
            "",
            "",
            f"< {target:,}",
            _met(figure["max"] < target),
        )
        for what, figure in (
            ("first paint", line["fleet_fcp_ms"]),
            ("fleet page drawn with data", line["fleet_data_ms"]),
        )
    ]


def _alerts_rows(line: Line) -> list[Row]:
    median_ms, limit_ms = line["median_s"] * 1000, line["interval_s"] * 1000 / 3
    return [
        (
            (
                f"alert evaluation, {line['rules']:,} rules over {line['devices']:,} devices"
                f" ({line['pairs']:,} rule-device pairs, {line['path']}), ms per cycle"
                f" (first, with {line['firing']:,} transitions: {_n(line['first_s'] * 1000)})"
            ),
            _n(median_ms),
            "",
            "",
            f"<= {_n(limit_ms)} (a third of the interval)",
            _met(median_ms <= limit_ms and line["first_s"] * 1000 <= limit_ms),
        )
    ]


def _cost_rows(line: Line) -> list[Row]:
    return [
        (f"cost model: {stage}, CPU µs per 1,000 readings", _n(us), "", "", "", "")
        for stage, us in line["cpu_us_per_1000_readings"].items()
    ]


def _scale_rows(line: Line) -> list[Row]:
    largest = line["sizes"][-1]
    rows: list[Row] = [
        (
            f"{name} intake at {largest:,} registered devices vs at 100 ({line['path']}), rate",
            "",
            "",
            f"{line['ratio_median'][key][-1]:.2f}",
            ">= 0.8",
            _met(line["ratio_median"][key][-1] >= 0.8),
        )
        for name, key in (("MQTT", "mqtt"), ("HTTP", "http"))
    ]
    rows += [
        (
            f"{query} at {largest:,} devices, p95 ms",
            _n(line["p95_ms_median"][query][-1]),
            _n(line["p95_ms_median"][query][0]),
            "",
            "<= 200",
            _met(line["p95_ms_median"][query][-1] <= 200),
        )
        for query in line["p95_ms_median"]
    ]
    return rows


def _history_rows(line: Line) -> list[Row]:
    where = f"{line['days']} days of 1 Hz data ({line['path']})"
    rows: list[Row] = [
        (
            f"{what}, {where}, p95 ms",
            _n(line[key]["p95_ms"]),
            "",
            "",
            "<= 100" if key == "year_1d" else "",
            _met(line[key]["p95_ms"] <= 100) if key == "year_1d" else "",
        )
        for key, what in (
            ("year_1d", "the whole range as 1-day buckets"),
            ("days30_1h", "30 days as 1-hour buckets"),
            ("raw_hour_11_months", "a raw hour 11 months back"),
        )
    ]
    rows.append(
        (f"bytes a raw reading, {where}", _n(line["raw_bytes_per_reading"]), "", "", "", "")
    )
    return rows


def _fleet_rows(line: Line) -> list[Row]:
    p95, target = line["day_1h"]["p95_ms"], line["target_p95_ms"]
    return [
        (
            (
                f"fleet aggregate by tag, a day of 1-hour buckets across {line['devices']:,}"
                f" devices ({line['path']}), p95 ms (p50 {_n(line['day_1h']['p50_ms'])})"
            ),
            _n(p95),
            "",
            "",
            f"<= {target}",
            _met(p95 <= target),
        )
    ]


BENCHMARKS = (
    Benchmark("writer", (), ("--rows", "20000", "--runs", "1", "--path", "plain"), _writer_rows),
    Benchmark(
        "ingest_http",
        (),
        ("--devices", "4", "--requests", "40", "--runs", "1"),
        _http_rows,
    ),
    Benchmark(
        "ingest_mqtt",
        (),
        ("--messages", "1000", "--hobby-messages", "200", "--runs", "1"),
        _mqtt_rows,
    ),
    Benchmark("e2e_latency", (), ("--rate", "200", "--seconds", "4", "--runs", "1"), _e2e_rows),
    Benchmark(
        "cost_model",
        (),
        ("--runs", "1", "--rows", "20000", "--messages", "1000", "--rounds", "10"),
        _cost_rows,
    ),
    Benchmark("api_query", (), ("--days", "2", "--runs", "5", "--path", "plain"), _api_rows),
    Benchmark("device_footprint", (), ("--duration-s", "10", "--backlog", "2000"), _device_rows),
    Benchmark("console_paint", (), ("--devices", "1000", "--runs", "1"), _console_rows),
    Benchmark(
        "scale",
        ("--plot", "docs/img/scale.png"),
        (
            "--sizes",
            "1000",
            "--messages",
            "20000",
            "--requests",
            "200",
            "--queries",
            "5",
            "--runs",
            "1",
        ),
        _scale_rows,
    ),
    Benchmark("history", (), ("--days", "3", "--runs", "5", "--path", "plain"), _history_rows),
    Benchmark(
        "alerts_eval",
        (),
        ("--devices", "1000", "--rules", "100", "--runs", "1", "--path", "plain"),
        _alerts_rows,
    ),
    Benchmark("fleet_aggregate", (), ("--runs", "5", "--path", "plain"), _fleet_rows),
)


def _run(bench: Benchmark, args: Sequence[str], timeout_s: float) -> dict[str, Any]:
    """Run one benchmark process; its stderr (progress) passes through."""
    command = [sys.executable, "-m", f"benchmarks.{bench.name}", *args]
    print(f"== {bench.name} {' '.join(args)}", file=sys.stderr, flush=True)
    load_before = os.getloadavg()
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, stdout=subprocess.PIPE, text=True, check=False, timeout=timeout_s
        )
    except subprocess.TimeoutExpired as exc:
        print(f"== {bench.name} did not finish in {timeout_s:.0f} s", file=sys.stderr)
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        done = subprocess.CompletedProcess(command, -1, stdout)
    lines = []
    for text in done.stdout.splitlines():
        try:
            parsed = json.loads(text)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            lines.append({"benchmark": bench.name} | parsed)
    return {
        "benchmark": bench.name,
        "args": list(args),
        "exit_status": done.returncode,
        "seconds": round(time.perf_counter() - started, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "lines": lines,
    }


def table(records: list[dict[str, Any]]) -> str:
    """The figures as a Markdown table: figure, ours, baseline, ratio, target, met?."""
    by_name = {bench.name: bench for bench in BENCHMARKS}
    out = [
        "| figure | ours | baseline | ratio | target | met? |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for record in records:
        rows = by_name[record["benchmark"]].rows
        out.extend("| " + " | ".join(row) + " |" for line in record["lines"] for row in rows(line))
        if record["exit_status"] != 0 or not record["lines"]:
            # Lines printed before a failure (one storage path of two, say) still count.
            out.append(
                f"| {record['benchmark']} | failed (exit {record['exit_status']}) | | | | **no** |"
            )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks, write the results files and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
        help="small sizes, one run each: checks the machinery (also BENCH_QUICK=1)",
    )
    parser.add_argument(
        "--only", action="append", choices=[b.name for b in BENCHMARKS], help="repeatable"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    chosen = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    started = datetime.now(UTC)
    records: list[dict[str, Any]] = []
    for bench in chosen:
        bench_args = list(bench.quick if args.quick else bench.full)
        records.append(_run(bench, bench_args, 600 if args.quick else 3600))
    text = table(records)
    result = {
        "started": started.isoformat(),
        "quick": args.quick,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "records": records,
        "table": text,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    body = json.dumps(result, indent=2) + "\n"
    (args.results_dir / f"{stamp}{'-quick' if args.quick else ''}.json").write_text(body)
    (args.results_dir / "latest.json").write_text(body)
    loads = [r["load_average_before"][0] for r in records]
    print(text)
    print(
        f"\n{len(records)} benchmarks, load average (1 min) {min(loads):.1f} to {max(loads):.1f}"
        f" on {os.cpu_count()} CPUs; results in {args.results_dir}/latest.json"
    )
    return 0 if all(r["exit_status"] == 0 and r["lines"] for r in records) else 1
