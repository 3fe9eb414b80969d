"""Device agent footprint and backlog drain; prints one JSON line.

Footprint: the agent runs as its own process (``python -m device_client run``) with 8
synthetic metrics sampled at 1 Hz for ``--duration-s`` seconds, publishing to a real
Mosquitto. Measured from outside with psutil and /proc/<pid>/io: peak RSS, CPU share of one
core after start-up, bytes written to files (``wchar``: socket sends are not counted there,
so this is the spool plus any log output, which is kept at WARNING), and spool commits per
stored batch (from the agent's final progress line).

Drain: a spool pre-filled with ``--backlog`` reading-sets (8 values each, a day at 1 Hz
ending now) is drained by a fresh agent process, timed from its start. ``--drain-via``:

- ``ingest`` (default): into a live ingest service (``python -m ingest serve``) over
  Mosquitto, with a private PostgreSQL (``DATABASE_URL`` names an existing server) and
  Mosquitto (``MQTT_URL``/``--mqtt-url``); timed until the ingest's
  ``ingest_readings_accepted_total`` counter (incremented after commit, polled every
  50 ms) covers the whole backlog, then the stored rows are counted.
- ``ingest-http``: the same, the agent posting to the ingest's ``POST /v1/telemetry``
  (at the ingest's default per-device rate limit).
- ``mqtt``: to the broker only, counted by a subscriber that only counts.
- ``http``: to an ingest you run yourself (``--ingest-url URL --token TOKEN``), timed
  until the agent's spool is empty (every batch answered 200, i.e. committed).

    python benchmarks/device_footprint.py [--duration-s 60] [--backlog 86400]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402
    broker,
    count_rows,
    database_server,
    default_path,
    register_devices,
    scratch_database,
)
from device_client import Spool, SpoolConfig, read_status  # noqa: E402
from tests.support.processes import ServiceProcess, ingest_env  # noqa: E402

METRICS = 8
WARMUP_S = 5.0
FEED_BATCH = 2000
DRAIN_PREFIX = "bench-drain"
METRICS_POLL_S = 0.05


def write_config(
    directory: Path, device_id: str, target: str, *, http_token: str | None, log_level_s: float
) -> Path:
    """An agent config with 8 synthetic 1 Hz metrics and the shipped batch defaults."""
    if http_token is None:
        transport = f'transport = "mqtt"\n[mqtt]\nurl = "{target}"\n'
    else:
        transport = f'transport = "http"\n[http]\nurl = "{target}"\ntoken = "{http_token}"\n'
    sensors = "".join(
        f'[[sensors]]\ntype = "synthetic"\nname = "m{i}"\ninterval_s = 1\n' for i in range(METRICS)
    )
    text = (
        f'device_id = "{device_id}"\nlog_interval_s = {log_level_s}\n{transport}'
        f'[spool]\npath = "spool.db"\n{sensors}'
    )
    path = directory / "device.toml"
    path.write_text(text)
    return path


def start_agent(config: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m device_client run`` with its log on a pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "device_client", "run", "-c", str(config), "--log-level", "INFO"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop_agent(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM, wait, return the log."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return err.decode(errors="replace")


def wchar(pid: int) -> int:
    """Bytes the process passed to write() on files and pipes so far."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/<pid>/io")


def footprint(work: Path, mqtt_url: str, duration_s: float) -> dict[str, float]:
    """Run the agent at 1 Hz x 8 metrics and measure it from outside."""
    # One progress line just before the stop: its counters exclude the shutdown flush.
    config = write_config(
        work,
        "bench-footprint",
        mqtt_url,
        http_token=None,
        log_level_s=WARMUP_S + duration_s - 2.0,
    )
    proc = start_agent(config)
    ps = psutil.Process(proc.pid)
    peak_rss = 0
    try:
        time.sleep(WARMUP_S)
        cpu0 = ps.cpu_times()
        io0 = wchar(proc.pid)
        t0 = time.monotonic()
        while time.monotonic() - t0 < duration_s:
            peak_rss = max(peak_rss, ps.memory_info().rss)
            time.sleep(1.0)
        cpu1 = ps.cpu_times()
        io1 = wchar(proc.pid)
        elapsed = time.monotonic() - t0
    finally:
        log = stop_agent(proc)
    before_stop = log.split("received SIGTERM")[0]
    progress = re.findall(r" batches=(\d+) spool_commits=(\d+)", before_stop)
    batches, commits = (int(progress[-1][0]), int(progress[-1][1])) if progress else (0, -1)
    status = read_status(work / "spool.db")
    # 1 Hz x 8 metrics: the agent samples on a fixed schedule.
    readings = round(elapsed) * METRICS
    cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {
        "rss_mb": round(peak_rss / 2**20, 1),
        "cpu_pct_of_core": round(100 * cpu_s / elapsed, 2),
        "readings_measured": readings,
        "bytes_written_per_1000_readings": round((io1 - io0) * 1000 / max(readings, 1)),
        "spool_batches": batches,
        "spool_commits": commits,
        "commits_per_batch": round(commits / batches, 2) if batches else -1,
        "unsent_after_stop": status.depth_rows,
        "reading_sets_spooled_total": status.counters["spooled_total"],
    }


def fill_spool(work: Path, device_id: str, backlog: int) -> None:
    """Store ``backlog`` reading-sets of 8 values, as a day offline at 1 Hz would.

    The timestamps are a second apart and end now, so that the ingest accepts them all
    (within retention, not in the future) and each is a distinct reading.
    """
    values = {f"m{i}": 20.0 + i / 7 for i in range(METRICS)}
    first = datetime.now(UTC) - timedelta(seconds=backlog)
    with Spool(SpoolConfig(path=work / "spool.db", max_rows=backlog * 2), device_id) as spool:
        for start in range(0, backlog, FEED_BATCH):
            n = min(FEED_BATCH, backlog - start)
            stamps = (first + timedelta(seconds=start + i) for i in range(n))
            spool.append([(ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), values, None) for ts in stamps])


class Counter:
    """A subscriber that only counts reading-sets (by counting objects in each array)."""

    def __init__(self, mqtt_url: str, topic: str) -> None:
        host, port = mqtt_url.removeprefix("mqtt://").split(":")
        self.count = 0
        self.last_at = 0.0
        self.done = threading.Event()
        self.target = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
        self.client.connect(host, int(port))
        self.client.loop_start()
        if not subscribed.wait(10):
            raise TimeoutError("no SUBACK")

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        self.count += msg.payload.count(b'"seq":')
        if self.count >= self.target:
            self.last_at = time.monotonic()
            self.done.set()

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def wait_for_empty_backlog(proc: subprocess.Popen[bytes], t0: float, timeout_s: float) -> float:
    """Watch the agent's progress lines until one says backlog=0 (every batch got its 200)."""
    assert proc.stderr is not None
    deadline = t0 + timeout_s
    for raw in proc.stderr:
        if b" backlog=0 " in raw:
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            break
    raise TimeoutError("the spool did not drain in time")


def drain(work: Path, args: argparse.Namespace, mqtt_url: str) -> dict[str, object]:
    """Time how fast a fresh agent empties a spool into the broker or a given ingest URL."""
    device_id = f"{DRAIN_PREFIX}-00000"
    via_http = args.drain_via == "http"
    target = args.ingest_url if via_http else mqtt_url
    config = write_config(
        work,
        device_id,
        target,
        http_token=args.token if via_http else None,
        log_level_s=0.5 if via_http else 3600,
    )
    fill_spool(work, device_id, args.backlog)
    counter = None if via_http else Counter(mqtt_url, f"telemetry/{device_id}")
    if counter is not None:
        counter.target = args.backlog
    t0 = time.monotonic()
    proc = start_agent(config)
    try:
        if counter is not None:
            if not counter.done.wait(args.drain_timeout_s):
                raise TimeoutError(f"drained {counter.count} of {args.backlog} in time")
            elapsed = counter.last_at - t0
        else:
            elapsed = wait_for_empty_backlog(proc, t0, args.drain_timeout_s)
    finally:
        stop_agent(proc)
        if counter is not None:
            counter.close()
    return {
        "drain_backlog_reading_sets": args.backlog,
        "drain_via": args.drain_via,
        "drain_s": round(elapsed, 2),
        "drain_reading_sets_per_s": round(args.backlog / elapsed),
        "drain_readings_per_s": round(args.backlog * METRICS / elapsed),
    }


def metric(base_url: str, name: str) -> float:
    """One unlabelled sample of the ingest's ``/metrics`` (0 when absent)."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@contextmanager
def live_ingest(
    work: Path, mqtt_url: str, workers: int
) -> Iterator[tuple[ServiceProcess, str, str]]:
    """A migrated scratch database on a (private) server and an ingest service on it."""
    with database_server() as admin_url:
        mode = default_path(admin_url)
        with scratch_database(admin_url, mode) as db_url:
            # The service's own defaults, not the test harness's quicker flush.
            env = ingest_env(db_url, mqtt_url, flush_interval_s="0.05", db_retry_max_s="10")
            ingest = ServiceProcess("ingest", env, work / "ingest.log", workers=workers)
            with ingest:
                yield ingest, db_url, mode


def drain_into_ingest(work: Path, args: argparse.Namespace, mqtt_url: str) -> dict[str, object]:
    """Time a fresh agent's backlog until the ingest has committed every reading of it."""
    via_http = args.drain_via == "ingest-http"
    expected = args.backlog * METRICS
    with live_ingest(work, mqtt_url, args.ingest_workers) as (ingest, db_url, mode):
        [token] = register_devices(db_url, 1, prefix=DRAIN_PREFIX)
        device_id = f"{DRAIN_PREFIX}-00000"
        config = write_config(
            work,
            device_id,
            ingest.url if via_http else mqtt_url,
            http_token=token if via_http else None,
            log_level_s=3600,
        )
        fill_spool(work, device_id, args.backlog)
        t0 = time.monotonic()
        proc = start_agent(config)
        try:
            accepted = 0.0
            while accepted < expected:
                if time.monotonic() - t0 > args.drain_timeout_s:
                    raise TimeoutError(f"{accepted:.0f} of {expected} readings committed in time")
                if proc.poll() is not None:
                    raise RuntimeError(f"the agent exited {proc.returncode}")
                time.sleep(METRICS_POLL_S)
                accepted = metric(ingest.url, "ingest_readings_accepted_total")
            elapsed = time.monotonic() - t0
        finally:
            stop_agent(proc)
        # The agent kept sampling while it drained: those reading-sets come after the
        # backlog (the spool is replayed oldest first), and must be stored too.
        total = (read_status(work / "spool.db").next_seq - 1) * METRICS
        deadline = time.monotonic() + 30
        while (stored := count_rows(db_url)) < total and time.monotonic() < deadline:
            time.sleep(METRICS_POLL_S)
        duplicates = metric(ingest.url, "ingest_readings_duplicates_total")
    if stored != total:
        raise RuntimeError(f"stored {stored} rows, expected {total}")
    return {
        "drain_backlog_reading_sets": args.backlog,
        "drain_via": args.drain_via,
        "drain_ingest_workers": args.ingest_workers,
        "drain_storage": mode,
        "drain_s": round(elapsed, 2),
        "drain_reading_sets_per_s": round(args.backlog / elapsed),
        "drain_readings_per_s": round(expected / elapsed),
        "drain_rows_stored": stored,
        "drain_duplicates": int(duplicates),
    }


def main() -> int:
    """Run both measurements and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--backlog", type=int, default=86_400)
    parser.add_argument("--mqtt-url", default="", help="use this broker instead of a private one")
    parser.add_argument(
        "--drain-via", choices=["ingest", "ingest-http", "mqtt", "http"], default="ingest"
    )
    parser.add_argument("--ingest-workers", type=int, default=1, help="for --drain-via ingest*")
    parser.add_argument("--ingest-url", default="http://127.0.0.1:8001/v1/telemetry")
    parser.add_argument("--token", default="", help="device token for --drain-via http")
    parser.add_argument("--drain-timeout-s", type=float, default=600.0)
    parser.add_argument("--skip-footprint", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="device-bench-") as tmp, ExitStack() as stack:
        tmpdir = Path(tmp)
        mqtt_url = args.mqtt_url or stack.enter_context(broker())
        result: dict[str, object] = {"python": sys.version.split()[0]}
        if not args.skip_footprint:
            (tmpdir / "footprint").mkdir()
            result |= footprint(tmpdir / "footprint", mqtt_url, args.duration_s)
        (tmpdir / "drain").mkdir()
        if args.drain_via.startswith("ingest"):
            result |= drain_into_ingest(tmpdir / "drain", args, mqtt_url)
        else:
            result |= drain(tmpdir / "drain", args, mqtt_url)
    result["targets"] = {
        "rss_mb": 30,
        "cpu_pct_of_core": 2,
        "commits_per_batch": 1,
        "drain_readings_per_s": 2000,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
