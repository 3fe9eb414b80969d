"""MQTT intake throughput against a count-only paho subscriber on the same broker.

Each side drains the same backlog: N QoS 1 messages of 10 readings, published while its
persistent session is offline, so that publisher CPU does not share the measurement. The
rate is messages per second between the first and the last message received (count-only)
or committed (ingest, polled every 50 ms), for ingest with 1 and 2 workers. Prints one JSON
line: medians of ``--runs`` and ``ratio_2_workers`` = ingest (2 workers) / count-only.
Zero loss is checked: the ingest must store exactly N x 10 rows.
"""

from __future__ import annotations

import argparse
import json
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
from tests.support.ingest import IngestProcess

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


def count_only(url: str, messages: int, start: datetime) -> float:
    """Messages/s of a paho subscriber that only counts (default windows, auto-ack)."""
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
    sub.loop_start()
    if not done.wait(300):
        raise RuntimeError(f"count-only subscriber got {len(stamps)} of {messages}")
    sub.disconnect()
    sub.loop_stop()
    return (messages - 1) / (stamps[-1] - stamps[0])


def ingest_rate(
    db_url: str, mqtt_url: str, messages: int, *, workers: int, start: datetime, log_dir: Path
) -> float:
    """Messages/s from the broker's backlog to committed rows with ``workers`` workers."""
    settings = {"mqtt_receive_window": "5000", "db_pool_max": "4"}
    tag = uuid.uuid4().hex[:6]
    first = IngestProcess(
        db_url, mqtt_url, log_dir / f"ingest-{tag}.log", workers=workers, **settings
    )
    first.start()
    first.stop()  # sessions and subscriptions stay at the broker, offline
    before = count_rows(db_url)
    publish_backlog(mqtt_url, messages, start)
    target = before + messages * READINGS_PER_MESSAGE
    second = IngestProcess(
        db_url, mqtt_url, log_dir / f"ingest-{tag}-2.log", workers=workers, **settings
    )
    second.env["MQTT_SHARE_GROUP"], second.env["MQTT_CLIENT_ID"] = (
        first.env["MQTT_SHARE_GROUP"],
        first.env["MQTT_CLIENT_ID"],
    )
    second.start()
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
            time.sleep(0.05)
        if count_rows(db_url) != target:
            raise RuntimeError(
                f"ingest stored {count_rows(db_url) - before} of {target - before} rows"
            )
    finally:
        second.stop()
    t0, r0 = next((t, r) for t, r in samples if r > 0)
    t1, r1 = samples[-1]
    return (r1 - r0) / READINGS_PER_MESSAGE / (t1 - t0)


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
    args = parser.parse_args()
    results: dict[str, list[float]] = {"count_only": [], "ingest_1": [], "ingest_2": []}
    with database_server() as admin, broker() as mqtt_url, tempfile.TemporaryDirectory() as tmp:
        mode = default_path(admin)
        with scratch_database(admin, mode) as db_url:
            register_devices(db_url, DEVICES)
            start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
            for run in range(args.runs):
                offset = timedelta(hours=12 * run)
                results["count_only"].append(count_only(mqtt_url, args.messages, start + offset))
                results["ingest_1"].append(
                    ingest_rate(
                        db_url,
                        mqtt_url,
                        args.messages,
                        workers=1,
                        start=start + offset,
                        log_dir=Path(tmp),
                    )
                )
                results["ingest_2"].append(
                    ingest_rate(
                        db_url,
                        mqtt_url,
                        args.messages,
                        workers=2,
                        start=start + offset + timedelta(hours=6),
                        log_dir=Path(tmp),
                    )
                )
                print(
                    f"  run {run + 1}: "
                    + ", ".join(f"{k} {v[-1]:,.0f} msg/s" for k, v in results.items()),
                    file=sys.stderr,
                )
    ratios = [i2 / c for i2, c in zip(results["ingest_2"], results["count_only"], strict=True)]
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
                "ingest_1_worker_msg_s": round(statistics.median(results["ingest_1"]), 1),
                "ingest_2_workers_msg_s": round(statistics.median(results["ingest_2"]), 1),
                "ingest_2_workers_readings_s": round(
                    statistics.median(results["ingest_2"]) * READINGS_PER_MESSAGE, 1
                ),
                "ratio_2_workers": round(statistics.median(ratios), 3),
                "lost": 0,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
