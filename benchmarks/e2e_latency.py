"""End-to-end latency of the MQTT path, from publish to committed, at a steady rate.

An ingest with 2 workers (shipped defaults: flush interval, batch size, receive window)
takes QoS 1 messages of 10 readings from 100 devices at a steady rate. Each reading's ts is
its publish time. The first item of the messages of 10 probe devices carries the metric
``probe``; a poller reads those rows through the unique index (device, metric, time) every
10 ms, so a latency is the poll time minus ts: publish, broker, parse, batch, COPY and
commit, plus up to one poll interval. The first 2 s of each run are a warm-up.

Without ``--rate`` the maximum sustained rate is found first, with the publisher running
beside the service as it does in the timed runs (a drain of a backlog published earlier
reads higher: it leaves the publisher's CPU out): the rate grows by half each step until a
step falls behind (publishing slower than asked, a probe lost, or p95 over 2 s). The timed
runs then publish at half the last rate that kept up. Prints one JSON line: p50/p95/p99 in
ms (median over ``--runs``), the rates, and the probes never seen (lost).
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from benchmarks.common import broker, database_server, default_path, scratch_database
from benchmarks.ingest_mqtt import DEVICES, READINGS_PER_MESSAGE, _client
from tests.support.processes import ServiceProcess, ingest_env

PROBES = 10  # devices 0-9 carry the probe metric
POLL_S = 0.01
WARM_UP_S = 2.0
RAMP_FROM = 250.0  # messages/s of the first step of the search for the sustained rate
RAMP_STEP_S = 6.0
KEPT_UP_P95_MS = 2000.0
_PROBE_ROWS = """
SELECT r.device_key, r.time FROM readings r
WHERE r.device_key = ANY(%s)
  AND r.metric_key = (SELECT metric_key FROM metrics WHERE name = 'probe')
  AND r.time >= %s
"""


def register(url: str) -> dict[str, int]:
    """Register the devices (no tokens needed for MQTT); return device id → key."""
    ids = [f"bench-{i:05d}" for i in range(DEVICES)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO devices (device_id) SELECT unnest(%s::text[])", [ids])
        rows = conn.execute(
            "SELECT device_id, device_key FROM devices WHERE device_id = ANY(%s)", [ids]
        ).fetchall()
    return dict(rows)


def body(device: int, ts: datetime) -> bytes:
    """Ten readings at ``ts`` + k µs; a probe device's first one is the probe."""
    items = [
        {
            "ts": (ts + timedelta(microseconds=k)).isoformat(),
            "values": {"probe" if k == 0 and device < PROBES else "v": float(k)},
        }
        for k in range(READINGS_PER_MESSAGE)
    ]
    return json.dumps(items).encode()


class Publisher(threading.Thread):
    """Publishes at a steady rate in 10 ms ticks; records each probe's (device key, ts)."""

    def __init__(self, url: str, rate: float, seconds: float, keys: dict[str, int]) -> None:
        super().__init__(name="publisher", daemon=True)
        self.url, self.rate, self.seconds, self.keys = url, rate, seconds, keys
        self.pending: collections.OrderedDict[tuple[int, datetime], None] = (
            collections.OrderedDict()
        )
        self.lock = threading.Lock()
        self.sent = 0
        self.elapsed = 0.0

    def run(self) -> None:
        """Publish until ``seconds`` have passed, then wait for every PUBACK."""
        client = _client(self.url, f"pub-{uuid.uuid4().hex[:8]}", clean=True)
        client.loop_start()
        started = time.perf_counter()
        infos = []
        while (now := time.perf_counter()) - started < self.seconds:
            due = int((now - started) * self.rate) + 1
            while self.sent < due:
                device = self.sent % DEVICES
                ts = datetime.now(UTC)
                if device < PROBES:
                    with self.lock:
                        self.pending[(self.keys[f"bench-{device:05d}"], ts)] = None
                infos.append(
                    client.publish(f"telemetry/bench-{device:05d}", body(device, ts), qos=1)
                )
                self.sent += 1
            time.sleep(0.01)
        self.elapsed = time.perf_counter() - started
        try:
            for info in infos:
                info.wait_for_publish(60)
        except (ValueError, RuntimeError) as exc:
            # paho gives up on messages it could not send in time (ERR_QUEUE_SIZE): a step
            # that outran the broker; its probes stay pending and count as lost.
            print(f"  publisher: {exc}", file=sys.stderr)
        client.disconnect()
        client.loop_stop()


def measure(
    db_url: str, mqtt_url: str, keys: dict[str, int], rate: float, seconds: float
) -> dict[str, float]:
    """One run: publish for ``seconds`` while polling for the probes; latencies in ms."""
    publisher = Publisher(mqtt_url, rate, seconds, keys)
    probe_keys = [keys[f"bench-{i:05d}"] for i in range(PROBES)]
    latencies: list[float] = []
    counted_from = datetime.now(UTC) + timedelta(seconds=WARM_UP_S)
    publisher.start()
    with psycopg.connect(db_url, autocommit=True) as conn:
        give_up = time.monotonic() + seconds + 30
        while time.monotonic() < give_up:
            with publisher.lock:
                oldest = next(iter(publisher.pending), None)
            if oldest is None:
                if not publisher.is_alive():
                    break
                time.sleep(POLL_S)
                continue
            rows = conn.execute(_PROBE_ROWS, [probe_keys, oldest[1]]).fetchall()
            seen = datetime.now(UTC)
            with publisher.lock:
                found = [ts for key, ts in rows if publisher.pending.pop((key, ts), 0) is None]
            latencies.extend(
                (seen - ts).total_seconds() * 1000 for ts in found if ts >= counted_from
            )
            time.sleep(POLL_S)
    publisher.join()
    if len(latencies) < 2:  # nothing arrived in time: a run that fell far behind
        latencies = [float("inf")] * 2
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "p50_ms": statistics.median(latencies),
        "p95_ms": cuts[94],
        "p99_ms": cuts[98],
        "samples": len(latencies),
        "rate_msg_s": publisher.sent / publisher.elapsed,
        "lost": len(publisher.pending),
    }


def wait_until_drained(db_url: str) -> None:
    """Wait until the row count stops growing: a step that fell behind leaves a backlog."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        last = -1
        while True:
            row = conn.execute("SELECT count(*) FROM readings").fetchone()
            count = int(row[0]) if row else 0
            if count == last:
                return
            last = count
            time.sleep(2)


def sustained_rate(db_url: str, mqtt_url: str, keys: dict[str, int]) -> float:
    """The highest rate of the ramp that kept up (messages/s), publisher running alongside."""
    rate, kept = RAMP_FROM, 0.0
    while True:
        step = measure(db_url, mqtt_url, keys, rate, RAMP_STEP_S)
        ok = (
            step["rate_msg_s"] >= 0.95 * rate
            and step["lost"] == 0
            and step["p95_ms"] <= KEPT_UP_P95_MS
        )
        print(
            f"  ramp {rate:,.0f} msg/s: published {step['rate_msg_s']:,.0f}/s,"
            f" p95 {step['p95_ms']:,.0f} ms, lost {step['lost']:.0f}"
            f" -> {'kept up' if ok else 'fell behind'}",
            file=sys.stderr,
        )
        wait_until_drained(db_url)
        if not ok:
            return kept
        kept, rate = rate, rate * 1.5


def main() -> int:
    """Run the measurement and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rate", type=float, help="messages/s to publish (default: half the sustained rate)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="publishing time a run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    runs: list[dict[str, float]] = []
    with database_server() as admin, broker() as mqtt_url, tempfile.TemporaryDirectory() as tmp:
        mode = default_path(admin)
        with scratch_database(admin, mode) as db_url:
            keys = register(db_url)
            settings = {"flush_interval_s": "0.05"}  # the shipped default, not the tests' 0.02
            env = ingest_env(db_url, mqtt_url, **settings)
            ingest = ServiceProcess("ingest", env, Path(tmp) / "ingest.log", workers=args.workers)
            with ingest:
                sustained = None if args.rate else sustained_rate(db_url, mqtt_url, keys)
                rate = args.rate or (sustained or RAMP_FROM) / 2
                for run in range(args.runs):
                    runs.append(measure(db_url, mqtt_url, keys, rate, args.seconds))
                    print(
                        f"  run {run + 1}: "
                        + ", ".join(f"{k} {v:,.1f}" for k, v in runs[-1].items()),
                        file=sys.stderr,
                    )

    def mid(key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 1)

    print(
        json.dumps(
            {
                "benchmark": "e2e_latency",
                "path": mode,
                "workers": args.workers,
                "readings_per_message": READINGS_PER_MESSAGE,
                "sustained_rate_msg_s": sustained,
                "target_rate_msg_s": rate,
                "rate_msg_s": mid("rate_msg_s"),
                "seconds": args.seconds,
                "runs": args.runs,
                "samples": int(sum(r["samples"] for r in runs)),
                "p50_ms": mid("p50_ms"),
                "p95_ms": mid("p95_ms"),
                "p99_ms": mid("p99_ms"),
                "lost": int(sum(r["lost"] for r in runs)),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
