"""``python -m simulator demo`` as a user runs it: start, data flowing, Ctrl-C, run again.

The first run starts everything on a fresh data directory with a small fleet, waits for
readings to be stored (seen through the query API with the key it printed), sees its
alert rules and its webhook receiver print a signed notification of a device running hot,
and is stopped with SIGINT: exit 0 and none of its processes (PostgreSQL, broker, ingest and its
workers, API) left. The second run on the same directory, without MQTT, must show the
first run's readings and accept the same admin key; then ``--clean`` removes it all.
A run forced to ``--broker amqtt`` (what a machine without Mosquitto gets) carries the
MQTT devices' readings over MQTT 3.1.1 and stops as cleanly.
"""

from __future__ import annotations

import contextlib
import io
import json
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from simulator import demo
from simulator.errors import ServiceNotInstalledError
from simulator.services import AmqttServer, free_port

DEVICES = 10
RECEIVER = "webhook receiver on http://127.0.0.1:"


class Launcher:
    """The demo launcher as a subprocess, its stdout read line by line in a thread."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.api_port = free_port()
        self.ingest_port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "simulator", "demo",
                "--data-dir", str(data_dir),
                "--devices", str(DEVICES),
                "--workers", "1",
                "--api-port", str(self.api_port),
                "--ingest-port", str(self.ingest_port),
                "--summary-s", "1",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.put(line.rstrip("\n"))

    def wait_for(self, prefix: str, timeout_s: float = 90) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.output.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting {prefix!r}; output:\n" + "\n".join(self.output))

    def api(self, path: str, key: str) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}", headers={"Authorization": f"Bearer {key}"}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())

    def post(self, port: int, path: str, token: str, body: object) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())

    def latest(self, device_id: str, key: str) -> list[Any]:
        try:
            values: list[Any] = self.api(f"/v1/devices/{device_id}/latest", key)["values"]
        except urllib.error.HTTPError as exc:  # 404 until the fleet has registered it
            if exc.code != 404:
                raise
            return []
        return values

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=90)
        self.wait_for("stopped", timeout_s=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=5)


def _processes(data_dir: Path, launcher: psutil.Process) -> list[psutil.Process]:
    """Every process of the demo: the launcher's descendants and those named in run.json."""
    pids = json.loads((data_dir / "run.json").read_text())
    assert {"launcher", "postgres", "api", "ingest"} <= set(pids)
    found = {p.pid: p for p in launcher.children(recursive=True)}
    for pid in pids.values():
        found.setdefault(pid, psutil.Process(pid))
    postgres = found[pids["postgres"]]
    found |= {p.pid: p for p in postgres.children()}
    return list(found.values())


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _poll(what: str, check: Any, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's basetemp: another pytest session starting meanwhile makes
    # /tmp/pytest-of-<user> 0700 again, and the servers' accounts could no longer reach it.
    top = Path(tempfile.mkdtemp(prefix="demo-test-"))
    path = top / "var"
    yield path
    pids_file = path / "run.json"
    if pids_file.exists():  # a failed test: leave no server behind
        for pid in json.loads(pids_file.read_text()).values():
            if psutil.pid_exists(pid):
                psutil.Process(pid).kill()
    shutil.rmtree(top, ignore_errors=True)


def test_demo_runs_stops_cleanly_and_keeps_its_data(data_dir: Path) -> None:
    first = Launcher(data_dir, "--pg-port", str(free_port()), "--mqtt-port", str(free_port()))
    try:
        console = first.wait_for("Open the console: ")
        assert console.startswith(f"Open the console: http://127.0.0.1:{first.api_port}/ ")
        with urllib.request.urlopen(f"http://127.0.0.1:{first.api_port}/", timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("text/html")
            assert "Content-Security-Policy" in resp.headers
        key = first.wait_for("API_ADMIN_KEY=").partition("=")[2]
        assert key.startswith("ak_")
        assert (data_dir / "admin-key").stat().st_mode & 0o777 == 0o600
        fleet = _poll(
            "readings stored",
            lambda: (f := first.api("/v1/fleet", key))["readings_last_minute"] >= 100 and f,
        )
        assert fleet["devices"]["total"] == DEVICES
        kept = first.api("/v1/devices/demo-00000/readings?limit=1", key)["readings"][0]
        first.wait_for("[")  # the live summary
        # The demo's alert rules, and its receiver printing a signed notification: a device
        # of the environmental kind runs hot (as the simulator's anomalies make them).
        rules = first.api("/v1/alert-rules", key)["rules"]
        assert {r["name"] for r in rules} == {"Temperature spike", "Device offline"}
        assert any(
            line.startswith("webhook receiver on http://127.0.0.1:") for line in first.output
        )
        hot = first.post(
            first.api_port,
            "/v1/devices",
            key,
            {"device_id": "hot-1", "metadata": {"profile": "environmental"}},
        )
        first.post(
            first.ingest_port, "/v1/telemetry", hot["token"], {"values": {"temperature": 60}}
        )
        line = first.wait_for("webhook: FIRING 'Temperature spike' (warning) on hot-1: value 60")
        assert line.endswith("[signature ok]")
        processes = _processes(data_dir, psutil.Process(first.proc.pid))
        assert len(processes) >= 6  # postgres (and its workers), mosquitto, api, ingest, worker
        assert first.stop() == 0
    finally:
        first.kill()
    assert [p.pid for p in processes if _alive(p)] == []
    assert not (data_dir / "run.json").exists()

    second = Launcher(data_dir, "--no-mqtt")
    try:
        assert second.wait_for("API_ADMIN_KEY=") == f"API_ADMIN_KEY={key}"
        assert any(line.startswith("MQTT is off") for line in second.output)
        ts = urllib.parse.quote(kept["ts"])
        again = second.api(
            f"/v1/devices/demo-00000/readings?metric={kept['metric']}&start={ts}&limit=1", key
        )["readings"]
        assert again == [kept]
        _poll(
            "HTTP-only devices stored",
            lambda: second.latest("demo-http-00000", key),
        )
        # Both fleets, and the device that ran hot.
        assert second.api("/v1/fleet", key)["devices"]["total"] == 2 * DEVICES + 1
        # The rules were kept; the webhook follows the receiver to its new port.
        assert not any(line.startswith("made the alert rules") for line in second.output)
        assert any(line.startswith(RECEIVER) for line in second.output)
        assert second.stop() == 0
    finally:
        second.kill()

    done = subprocess.run(
        [sys.executable, "-m", "simulator", "demo", "--clean", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not data_dir.exists()


def test_demo_over_amqtt_carries_mqtt_devices_and_stops_cleanly(data_dir: Path) -> None:
    ports = ("--pg-port", str(free_port()), "--mqtt-port", str(free_port()))
    run = Launcher(data_dir, "--broker", "amqtt", *ports)
    try:
        key = run.wait_for("API_ADMIN_KEY=").partition("=")[2]
        assert any(line.startswith("amqtt ") and "lower limits" in line for line in run.output)
        assert any("(amqtt, MQTT 3.1.1)" in line for line in run.output)
        # Devices 0 and 2 of the fleet send over MQTT only (wire v1 and SenML).
        for device in ("demo-00000", "demo-00002"):
            _poll(f"{device}'s readings over MQTT", lambda d=device: run.latest(d, key))
        processes = _processes(data_dir, psutil.Process(run.proc.pid))
        assert "amqtt" in json.loads((data_dir / "run.json").read_text())
        assert run.stop() == 0
    finally:
        run.kill()
    assert [p.pid for p in processes if _alive(p)] == []
    assert not (data_dir / "run.json").exists()


async def test_auto_takes_amqtt_where_mosquitto_is_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def absent() -> Path:
        raise ServiceNotInstalledError("mosquitto not found")

    monkeypatch.setattr(demo, "find_mosquitto", absent)
    out = io.StringIO()
    async with contextlib.AsyncExitStack() as stack:
        run = demo._Demo(demo.DemoConfig(data_dir=tmp_path), out, stack)
        await run._start_broker(free_port())
        broker = run.broker
        assert isinstance(broker, AmqttServer)
        assert broker.pid is not None
        assert (run.mqtt_protocol, run.mqtt_url) == ("3.1.1", broker.url)
    assert not broker.running
    assert "stands in for Mosquitto, which is not installed, with lower limits" in out.getvalue()


def test_a_taken_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable, "-m", "simulator", "demo",
                "--data-dir", str(tmp_path / "var"), "--api-port", str(port),
            ],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == (
        f"error: port {port} on 127.0.0.1 is in use (another demo or service?):"
        " stop it or choose another with --api-port\n"
    )


def test_clean_leaves_a_directory_that_is_not_the_demos(tmp_path: Path) -> None:
    (tmp_path / "precious").write_text("keep me")
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "demo", "--clean", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "not a demo data directory" in done.stderr
    assert (tmp_path / "precious").read_text() == "keep me"
