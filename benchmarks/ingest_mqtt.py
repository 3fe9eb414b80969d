"""MQTT intake throughput and CPU against two paho subscribers on the same broker.

Each side drains the same backlog: N QoS 1 messages of 10 readings, published while its
persistent session is offline, so that publisher CPU does not share the measurement. The
sides, in each run:

- ``count_only``: a paho subscriber that only counts (the ceiling of a Python MQTT client);
- ``hobby``: the pattern most hobby ingesters use, a paho subscriber that INSERTs each
  message's readings and commits (auto-ack: a crash loses what was acknowledged but not
  committed), on a backlog of its own size (``--hobby-messages``);
- ``ingest_2``: the ingest as deployed by default, 2 workers (worker 0 holds a plain
  subscription and hands messages to worker 1);
- ``ingest_2_receipts``: the same, every message asking for a commit receipt;
- ``ingest_2_shared``: 2 workers in a shared subscription (the default before receipts);
- ``ingest_1``: one worker.

Every side is timed the same way: from its broker connection (the CONNACK, after which
the broker sends the queued backlog) to the last message counted (count-only), committed
(hobby) or committed (ingest: ``ingest_last_commit_timestamp_seconds`` in its /metrics,
read once the service has stored every row); the CPU is the subscriber's or the workers'
(user + system) per message, and the machine's (every process and the kernel, from
``/proc/stat``: it says whether a side had both cores busy) per message. Prints
one JSON line: every run's figures, their medians, and the ratios paired within a run
(the median and the range): ``ratio_2_workers`` = ingest_2 / count-only,
``ratio_vs_hobby``, ``ratio_receipts`` = ingest_2_receipts / ingest_2 and
``ratio_default_vs_shared`` = ingest_2 / ingest_2_shared. Zero loss is checked: every
ingest side and the hobby subscriber must store exactly N x 10 rows.
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
from typing import NamedTuple
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from benchmarks.common import (
    MachineLoad,
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
# Packet ids are 16 bits: paho refuses a publish whose id is still waiting for its PUBACK.
_MAX_UNACKED = 50_000


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
    url: str,
    messages: int,
    start: datetime,
    topic_prefix: str = "telemetry",
    *,
    receipts: bool = False,
    devices: int = DEVICES,
) -> None:
    """Publish ``messages`` QoS 1 messages spread over ``devices``; wait for every PUBACK.

    ``receipts``: each message names a response topic (``receipts/{device}/bench``).
    """
    client = _client(url, f"pub-{uuid.uuid4().hex[:8]}", clean=True)
    client.loop_start()
    infos = []
    for i in range(messages):
        device, slot = i % devices, i // devices
        base = start + timedelta(seconds=slot * READINGS_PER_MESSAGE)
        body = [
            {
                "ts": (base + timedelta(seconds=k)).isoformat(),
                "seq": slot * READINGS_PER_MESSAGE + k,
                "values": {"v": float(k)},
            }
            for k in range(READINGS_PER_MESSAGE)
        ]
        props = None
        if receipts:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = f"receipts/bench-{device:05d}/bench"
            props.CorrelationData = i.to_bytes(4, "big")
        topic = f"{topic_prefix}/bench-{device:05d}"
        infos.append(client.publish(topic, json.dumps(body).encode(), qos=1, properties=props))
        if len(infos) == _MAX_UNACKED:
            _wait_published(infos)
    _wait_published(infos)
    client.disconnect()
    client.loop_stop()


def _wait_published(infos: list[mqtt.MQTTMessageInfo]) -> None:
    for info in infos:
        info.wait_for_publish(120)
    infos.clear()


class Drain(NamedTuple):
    """One side's drain of a backlog: its rate, its own CPU and when it ran (wall clock)."""

    msg_s: float
    cpu_us_msg: float  # the side's own processes (the workers, for the ingest)
    cpu_us_msg_by_worker: list[float]
    window: tuple[float, float]


def count_only(url: str, messages: int, start: datetime) -> Drain:
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
        stamps.append(time.time())
        if len(stamps) == messages:
            done.set()

    sub = _client(url, client_id, clean=False)
    connected = _connection_time(sub)
    sub.on_message = on_message
    cpu = time.process_time()
    sub.loop_start()
    if not done.wait(300):
        raise RuntimeError(f"count-only subscriber got {len(stamps)} of {messages}")
    cpu = time.process_time() - cpu
    sub.disconnect()
    sub.loop_stop()
    _end_sessions(url, [client_id])
    cpu_us = cpu / messages * 1e6
    return Drain(
        messages / (stamps[-1] - connected[0]), cpu_us, [cpu_us], (connected[0], stamps[-1])
    )


def _connection_time(client: mqtt.Client) -> list[float]:
    """Return a list that gets the wall-clock time of ``client``'s CONNACK."""
    stamp: list[float] = []

    def on_connect(*_args: object) -> None:
        stamp.append(time.time())

    client.on_connect = on_connect
    return stamp


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
            stamps.append(time.time())
            if len(stamps) == messages:
                done.set()

        sub = _client(url, client_id, clean=False)
        connected = _connection_time(sub)
        sub.on_message = on_message
        sub.loop_start()
        finished = done.wait(600)
        sub.disconnect()
        sub.loop_stop()
        _end_sessions(url, [client_id])
        if failures:
            raise RuntimeError(f"hobby subscriber failed: {failures[0]!r}")
        if not finished:
            raise RuntimeError(f"hobby subscriber stored {len(stamps)} of {messages} messages")
        row = conn.execute("SELECT count(*) FROM hobby_readings").fetchone()
        conn.execute("TRUNCATE hobby_readings")
        conn.commit()
    if row is None or row[0] != messages * READINGS_PER_MESSAGE:
        raise RuntimeError(f"hobby subscriber stored {row} rows, not {messages * 10}")
    return messages / (stamps[-1] - connected[0])


def ingest_rate(
    db_url: str,
    mqtt_url: str,
    messages: int,
    *,
    workers: int,
    start: datetime,
    log_dir: Path,
    receipts: bool = False,
    share_group: str = "",
    devices: int = DEVICES,
) -> Drain:
    """Messages/s from the broker's backlog to committed rows; CPU µs/msg, all and by worker.

    The backlog is spread over ``devices`` registered devices (``bench-00000`` on).
    """
    settings = {"mqtt_receive_window": "5000", "db_pool_max": "4", "mqtt_share_group": share_group}
    tag = uuid.uuid4().hex[:6]
    env = ingest_env(db_url, mqtt_url, **settings)
    # Every worker subscribes in a share group; worker 0 alone holds the plain subscription.
    subscribers = [f"{env['MQTT_CLIENT_ID']}-{i}" for i in range(workers if share_group else 1)]
    first = ServiceProcess("ingest", env, log_dir / f"ingest-{tag}.log", workers=workers)
    first.start()
    _wait_connected(first.url, len(subscribers))
    first.stop()  # sessions and subscriptions stay at the broker, offline
    before = count_rows(db_url)
    publish_backlog(mqtt_url, messages, start, receipts=receipts, devices=devices)
    target = before + messages * READINGS_PER_MESSAGE
    # The same client ids: the second one resumes the first one's sessions.
    second = ServiceProcess("ingest", env, log_dir / f"ingest-{tag}-2.log", workers=workers)
    second.start()
    pids = sorted(second.worker_pids(), key=_worker_index)
    cpu = [cpu_seconds([pid]) for pid in pids]
    try:
        # Progress from the service's own counter: polling count(*) would cost the
        # database more CPU than it leaves to the ingest. Each poll costs the workers about
        # 1 to 2 ms (the metrics of every worker), and the end comes from the gauge below,
        # not from the poll: half a second apart is enough.
        deadline = time.monotonic() + 300
        while accepted(second.url) < messages * READINGS_PER_MESSAGE:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        cpu = [cpu_seconds([pid]) - used for pid, used in zip(pids, cpu, strict=True)]
        if count_rows(db_url) != target:
            raise RuntimeError(
                f"ingest stored {count_rows(db_url) - before} of {target - before} rows"
            )
        # The commit of the last batch, to the microsecond: the poll that saw it came up to
        # half a second later.
        t1 = metric(second.url, "ingest_last_commit_timestamp_seconds")
    finally:
        second.stop()
        # Offline sessions left subscribed would take copies (or, in a share group, a share)
        # of every later side's backlog.
        _end_sessions(mqtt_url, subscribers)
    # From the broker connection (the broker sends the queued backlog right after it) to
    # the last commit: timing from the first commit instead leaves out the parsing of all
    # that arrived before it, up to a receive window per subscriber.
    t0 = _connected_at(log_dir / f"ingest-{tag}-2.log")
    if t1 <= t0:
        raise RuntimeError(f"the last commit ({t1}) is not after the connection ({t0})")
    per_worker = [used / messages * 1e6 for used in cpu]
    return Drain(messages / (t1 - t0), sum(per_worker), per_worker, (t0, t1))


def _connected_at(log: Path) -> float:
    """When the first worker of the service logging to ``log`` connected to the broker.

    The log's times are local wall-clock times to the millisecond, as ``time.time()``.
    """
    stamps = [
        datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # noqa: DTZ007
        for line in log.read_text().splitlines()
        if "connected to MQTT broker" in line and "subscribed to" in line
    ]
    if not stamps:
        raise RuntimeError(f"no broker connection in {log}")
    return min(stamps)


def _wait_connected(base_url: str, connections: int, timeout_s: float = 30) -> None:
    """Wait until ``connections`` workers are connected to the broker (and so subscribed)."""
    deadline = time.monotonic() + timeout_s
    while metric(base_url, "ingest_mqtt_connected") < connections:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {connections} ingest workers connected to the broker")
        time.sleep(0.05)


def _end_sessions(url: str, client_ids: list[str]) -> None:
    """Remove the broker's sessions of ``client_ids`` (clean start, no session expiry)."""
    parts = urlsplit(url)
    for client_id in client_ids:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, clean_start=True)
        client.loop(1)
        client.disconnect()


def _worker_index(pid: int) -> int:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return int(args[args.index(b"--worker-index") + 1])


def metric(base_url: str, name: str) -> float:
    """One unlabelled sample of the service's /metrics (summed over its workers), else 0."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def accepted(base_url: str) -> int:
    """Readings the service has stored, from its /metrics (all workers)."""
    return int(metric(base_url, "ingest_readings_accepted_total"))


_INGEST_SIDES = {
    # side: (workers, every message asks for a receipt, share group)
    "ingest_2": (2, False, ""),
    "ingest_2_receipts": (2, True, ""),
    "ingest_2_shared": (2, False, "ingest"),
    "ingest_1": (1, False, ""),
}


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def main() -> int:
    """Run the side-by-side measurement and print one JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--hobby-messages",
        type=int,
        default=5_000,
        help="backlog of the hobby side (about 5 s of it: enough for a stable figure)",
    )
    args = parser.parse_args()
    rates: dict[str, list[float]] = {side: [] for side in ("count_only", "hobby", *_INGEST_SIDES)}
    cpu: dict[str, list[float]] = {side: [] for side in ("count_only", *_INGEST_SIDES)}
    cpu_by_worker: dict[str, list[list[float]]] = {side: [] for side in _INGEST_SIDES}
    machine: dict[str, list[float]] = {side: [] for side in ("count_only", *_INGEST_SIDES)}
    with (
        database_server() as admin,
        broker() as mqtt_url,
        tempfile.TemporaryDirectory() as tmp,
        MachineLoad() as load,
    ):
        mode = default_path(admin)
        with scratch_database(admin, mode) as db_url:
            register_devices(db_url, DEVICES)
            start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
            for run in range(args.runs):
                offset = timedelta(hours=12 * run)
                drains = {"count_only": count_only(mqtt_url, args.messages, start + offset)}
                rates["hobby"].append(hobby(mqtt_url, db_url, args.hobby_messages, start + offset))
                for shift, (side, (workers, receipts, group)) in enumerate(_INGEST_SIDES.items()):
                    drains[side] = ingest_rate(
                        db_url,
                        mqtt_url,
                        args.messages,
                        workers=workers,
                        start=start + offset + timedelta(hours=2 * shift + 1),
                        log_dir=Path(tmp),
                        receipts=receipts,
                        share_group=group,
                    )
                    cpu_by_worker[side].append(
                        [round(us, 1) for us in drains[side].cpu_us_msg_by_worker]
                    )
                for side, drain in drains.items():
                    rates[side].append(drain.msg_s)
                    cpu[side].append(drain.cpu_us_msg)
                    machine[side].append(load.busy_seconds(*drain.window) / args.messages * 1e6)
                print(
                    f"  run {run + 1}: "
                    + ", ".join(f"{k} {v[-1]:,.0f} msg/s" for k, v in rates.items()),
                    file=sys.stderr,
                )
    pairs = {
        "ratio_2_workers": ("ingest_2", "count_only"),
        "ratio_vs_hobby": ("ingest_2", "hobby"),
        "ratio_receipts": ("ingest_2_receipts", "ingest_2"),
        "ratio_default_vs_shared": ("ingest_2", "ingest_2_shared"),
    }
    ratios = {
        name: [a / b for a, b in zip(rates[top], rates[bottom], strict=True)]
        for name, (top, bottom) in pairs.items()
    }
    print(
        json.dumps(
            {
                "benchmark": "ingest_mqtt",
                "path": mode,
                "messages": args.messages,
                "hobby_messages": args.hobby_messages,
                "readings_per_message": READINGS_PER_MESSAGE,
                "runs": args.runs,
                "qos": 1,
                "msg_s": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
                "msg_s_median": {k: round(statistics.median(vs), 1) for k, vs in rates.items()},
                # CPU per message: steadier than rates on a shared machine.
                "cpu_us_msg": {k: [round(v, 1) for v in vs] for k, vs in cpu.items()},
                "cpu_us_msg_median": {k: round(statistics.median(vs), 1) for k, vs in cpu.items()},
                "cpu_us_msg_by_worker": cpu_by_worker,
                # Everything the machine ran during the drain (database, broker, kernel
                # included), a message: with 2 cores, rate x this / 1e6 cores were busy.
                "machine_cpu_us_msg": {k: [round(v, 1) for v in vs] for k, vs in machine.items()},
                "machine_cores_busy": {
                    k: [round(r * m / 1e6, 2) for r, m in zip(rates[k], vs, strict=True)]
                    for k, vs in machine.items()
                },
                "ratios": {k: [round(v, 3) for v in vs] for k, vs in ratios.items()},
                "ratio_spread": {k: _spread(vs) for k, vs in ratios.items()},
                "ratio_2_workers": round(statistics.median(ratios["ratio_2_workers"]), 3),
                "lost": 0,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
