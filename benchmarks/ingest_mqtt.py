"""MQTT intake throughput against two paho subscribers on the same broker.

Each side drains the same backlog: N QoS 1 messages of 10 readings, published while its
persistent session is offline, so that publisher CPU does not share the measurement. The
sides: a paho subscriber that only counts (the ceiling of a Python MQTT client); the
pattern most hobby ingesters use, a paho subscriber that INSERTs each message's readings
and commits (auto-ack, so a crash loses what was acknowledged but not committed); and the
ingest with 1 and 2 workers. The rate is messages per second between the first and the
last message received (count-only), committed (hobby) or committed (ingest, from its
/metrics, polled every 100 ms). Prints one JSON line: medians of ``--runs``,
``ratio_2_workers`` = ingest (2 workers) / count-only and ``ratio_vs_hobby`` = ingest
(2 workers) / hobby, each the median of the ratios paired within a run. Zero loss is
checked: the ingest and the hobby subscriber must store exactly N x 10 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from benchmarks.common import (
    broker,
    count_rows,
    database_server,
    default_path,
    register_devices,
    scratch_database,
)
from tests.support.processes import ServiceProcess, ingest_env

DEVICES = 100
READINGS_PER_MESSAGE = 10


def _client(url: str, client_id: str, *, clean: bool) -> mqtt.Client:
    parts = urlsplit(url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    client.connect(
        parts.hostname or "127.0.0.1", parts.port or 1883, clean_start=clean, properties=props
    )
    return client


def publish_backlog(
    url: str, messages: int, start: datetime, topic_prefix: str = "telemetry"
) -> None:
    """Publish ``messages`` QoS 1 messages spread over the devices; wait for every PUBACK."""
    client = _client(url, f"pub-{uuid.uuid4().hex[:8]}", clean=True)
    client.loop_start()
    infos = []
    for i in range(messages):
        device, slot = i % DEVICES, i // DEVICES
        base = start + timedelta(seconds=slot * READINGS_PER_MESSAGE)
        body = [
            {
                "ts": (base + timedelta(seconds=k)).isoformat(),
                "seq": slot * READINGS_PER_MESSAGE + k,
                "values": {"v": float(k)},
            }
            for k in range(READINGS_PER_MESSAGE)
        ]
        infos.append(
            client.publish(f"{topic_prefix}/bench-{device:05d}", json.dumps(body).encode(), qos=1)
        )
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def count_only(url: str, messages: int, start: datetime) -> tuple[float, float]:
    """Messages/s of a paho subscriber that only counts (default windows, auto-ack), CPU µs/msg."""
    client_id = f"count-{uuid.uuid4().hex[:8]}"
    topic = f"$share/c{client_id}/bench/#"
    sub = _client(url, client_id, clean=True)
    sub.subscribe(topic, qos=1)
    sub.loop(2)
    sub.disconnect()
    publish_backlog(url, messages, start, topic_prefix="bench")
    stamps: list[float] = []
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        stamps.append(time.perf_counter())
        if len(stamps) == messages:
            done.set()

    sub = _client(url, client_id, clean=False)
    sub.on_message = on_message
    cpu = time.process_time()
    sub.loop_start()
    if not done.wait(300):
        raise RuntimeError(f"count-only subscriber got {len(stamps)} of {messages}")
    cpu = time.process_time() - cpu
    sub.disconnect()
    sub.loop_stop()
    return (messages - 1) / (stamps[-1] - stamps[0]), cpu / messages * 1e6


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


_HOBBY_TABLE = """
CREATE TABLE IF NOT EXISTS hobby_readings (
    ts timestamptz NOT NULL, device text NOT NULL, metric text NOT NULL, value float8 NOT NULL
)
"""
_HOBBY_INSERT = "INSERT INTO hobby_readings (ts, device, metric, value) VALUES (%s, %s, %s, %s)"


def hobby(url: str, db_url: str, messages: int, start: datetime) -> float:
    """Messages/s of a paho subscriber that INSERTs each message's readings and commits."""
    client_id = f"hobby-{uuid.uuid4().hex[:8]}"
    topic = f"$share/h{client_id}/hobby/#"
    sub = _client(url, client_id, clean=True)
    sub.subscribe(topic, qos=1)
    sub.loop(2)
    sub.disconnect()
    publish_backlog(url, messages, start, topic_prefix="hobby")
    stamps: list[float] = []
    done = threading.Event()
    failures: list[BaseException] = []
    with psycopg.connect(db_url) as conn:
        conn.execute(_HOBBY_TABLE)
        conn.commit()

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            try:
                device = msg.topic.rsplit("/", 1)[1]
                rows = [
                    (item["ts"], device, metric, value)
                    for item in json.loads(msg.payload)
                    for metric, value in item["values"].items()
                ]
                with conn.cursor() as cur:
                    cur.executemany(_HOBBY_INSERT, rows)
                conn.commit()
            except Exception as exc:  # noqa: BLE001  (reported by the main thread)
                failures.append(exc)
                done.set()
            stamps.append(time.perf_counter())
            if len(stamps) == messages:
                done.set()

        sub = _client(url, client_id, clean=False)
        sub.on_message = on_message
        sub.loop_start()
        finished = done.wait(600)
        sub.disconnect()
        sub.loop_stop()
        if failures:
            raise RuntimeError(f"hobby subscriber failed: {failures[0]!r}")
        if not finished:
            raise RuntimeError(f"hobby subscriber stored {len(stamps)} of {messages} messages")
        row = conn.execute("SELECT count(*) FROM hobby_readings").fetchone()
        conn.execute("TRUNCATE hobby_readings")
        conn.commit()
    if row is None or row[0] != messages * READINGS_PER_MESSAGE:
        raise RuntimeError(f"hobby subscriber stored {row} rows, not {messages * 10}")
    return (messages - 1) / (stamps[-1] - stamps[0])


def ingest_rate(
    db_url: str, mqtt_url: str, messages: int, *, workers: int, start: datetime, log_dir: Path
) -> tuple[float, float]:
    """Messages/s from the broker's backlog to committed rows, and the workers' CPU µs/msg."""
    settings = {"mqtt_receive_window": "5000", "db_pool_max": "4"}
    tag = uuid.uuid4().hex[:6]
    env = ingest_env(db_url, mqtt_url, **settings)
    first = ServiceProcess("ingest", env, log_dir / f"ingest-{tag}.log", workers=workers)
    first.start()
    first.stop()  # sessions and subscriptions stay at the broker, offline
    before = count_rows(db_url)
    publish_backlog(mqtt_url, messages, start)
    target = before + messages * READINGS_PER_MESSAGE
    # The same share group and client ids: the second one resumes the first one's sessions.
    second = ServiceProcess("ingest", env, log_dir / f"ingest-{tag}-2.log", workers=workers)
    second.start()
    pids = second.worker_pids()
    cpu = cpu_seconds(pids)
    try:
        # Progress from the service's own counter: polling count(*) would cost the
        # database more CPU than it leaves to the ingest.
        samples: list[tuple[float, int]] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            stored = accepted(second.url)
            samples.append((time.perf_counter(), stored))
            if stored >= messages * READINGS_PER_MESSAGE:
                break
            time.sleep(0.1)
        cpu = cpu_seconds(pids) - cpu
        if count_rows(db_url) != target:
            raise RuntimeError(
                f"ingest stored {count_rows(db_url) - before} of {target - before} rows"
            )
    finally:
        second.stop()
    t0, r0 = next((t, r) for t, r in samples if r > 0)
    t1, r1 = samples[-1]
    return (r1 - r0) / READINGS_PER_MESSAGE / (t1 - t0), cpu / messages * 1e6


def accepted(base_url: str) -> int:
    """Readings the service has stored, from its /metrics (all workers)."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    match = re.search(r"^ingest_readings_accepted_total ([0-9.e+]+)$", text, re.MULTILINE)
    return int(float(match.group(1))) if match else 0


def main() -> int:
    """Run the side-by-side measurement and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--hobby-messages", type=int, default=0, help="backlog of the hobby side (default: same)"
    )
    args = parser.parse_args()
    hobby_messages = args.hobby_messages or args.messages
    results: dict[str, list[float]] = {
        "count_only": [],
        "hobby": [],
        "ingest_1": [],
        "ingest_2": [],
    }
    cpu: dict[str, list[float]] = {"count_only": [], "ingest_1": [], "ingest_2": []}
    with database_server() as admin, broker() as mqtt_url, tempfile.TemporaryDirectory() as tmp:
        mode = default_path(admin)
        with scratch_database(admin, mode) as db_url:
            register_devices(db_url, DEVICES)
            start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
            for run in range(args.runs):
                offset = timedelta(hours=12 * run)
                rate, cpu_us = count_only(mqtt_url, args.messages, start + offset)
                results["count_only"].append(rate)
                cpu["count_only"].append(cpu_us)
                results["hobby"].append(hobby(mqtt_url, db_url, hobby_messages, start + offset))
                for workers, shift in ((1, 0), (2, 6)):
                    rate, cpu_us = ingest_rate(
                        db_url,
                        mqtt_url,
                        args.messages,
                        workers=workers,
                        start=start + offset + timedelta(hours=shift),
                        log_dir=Path(tmp),
                    )
                    results[f"ingest_{workers}"].append(rate)
                    cpu[f"ingest_{workers}"].append(cpu_us)
                print(
                    f"  run {run + 1}: "
                    + ", ".join(f"{k} {v[-1]:,.0f} msg/s" for k, v in results.items()),
                    file=sys.stderr,
                )
    ratios = [i2 / c for i2, c in zip(results["ingest_2"], results["count_only"], strict=True)]
    hobby_ratios = [i2 / h for i2, h in zip(results["ingest_2"], results["hobby"], strict=True)]
    print(
        json.dumps(
            {
                "benchmark": "ingest_mqtt",
                "path": mode,
                "messages": args.messages,
                "readings_per_message": READINGS_PER_MESSAGE,
                "runs": args.runs,
                "qos": 1,
                "count_only_msg_s": round(statistics.median(results["count_only"]), 1),
                "hobby_messages": hobby_messages,
                "hobby_msg_s": round(statistics.median(results["hobby"]), 1),
                "ingest_1_worker_msg_s": round(statistics.median(results["ingest_1"]), 1),
                "ingest_2_workers_msg_s": round(statistics.median(results["ingest_2"]), 1),
                "ingest_2_workers_readings_s": round(
                    statistics.median(results["ingest_2"]) * READINGS_PER_MESSAGE, 1
                ),
                "ratio_2_workers": round(statistics.median(ratios), 3),
                "ratio_vs_hobby": round(statistics.median(hobby_ratios), 1),
                # CPU per message: steadier than rates on a shared machine.
                "count_only_cpu_us_msg": round(statistics.median(cpu["count_only"]), 1),
                "ingest_1_worker_cpu_us_msg": round(statistics.median(cpu["ingest_1"]), 1),
                "ingest_2_workers_cpu_us_msg": round(statistics.median(cpu["ingest_2"]), 1),
                "lost": 0,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
