"""The agent against the real Mosquitto: order, no gaps, outages, status topic, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from device_client import LinkState, read_status
from simulator.services import MosquittoServer
from tests.device_client.helpers import (
    Collector,
    first_occurrences,
    running_agent,
    wait_for,
    write_config,
)
from tests.support.mqtt import TestClient

ROOT = Path(__file__).resolve().parents[2]


def device_id() -> str:
    return f"dev-{uuid.uuid4().hex[:8]}"


def test_readings_arrive_in_order_without_gaps(mqtt_url: str, tmp_path: Path) -> None:
    dev = device_id()
    path = write_config(tmp_path, device_id=dev, mqtt_url=mqtt_url)
    with Collector(mqtt_url, dev) as collector:
        with running_agent(path) as agent:
            wait_for(lambda: len(collector.seqs()) >= 30, what="30 reading-sets")
        spool = read_status(tmp_path / "spool.db")
        wait_for(lambda: len(collector.seqs()) >= spool.next_seq - 1, what="the last batch")
        seqs = collector.seqs()
    assert seqs == list(range(1, spool.next_seq))
    assert spool.depth_rows == 0
    assert agent.sampler is not None
    assert agent.sampler.stats.commits < len(seqs)  # batched, not one commit per reading
    item = collector.items[0]
    assert set(item) == {"ts", "seq", "values"}
    assert item["ts"].endswith("Z")
    assert len(item["ts"]) == len("2026-01-01T00:00:00.000000Z")
    assert set(item["values"]) == {"wave", "temperature"}  # one object per sample instant
    stamps = [i["ts"] for i in collector.items]
    assert stamps == sorted(stamps)


def test_broker_outage_nothing_lost_order_kept(
    mqtt_url: str, mosquitto: MosquittoServer | None, tmp_path: Path
) -> None:
    if mosquitto is None:
        pytest.skip("TEST_MQTT_URL names an external broker that this test cannot stop")
    dev = device_id()
    path = write_config(tmp_path, device_id=dev, mqtt_url=mqtt_url)
    # A persistent session, so the subscription outlives the broker restart.
    with Collector(mqtt_url, dev, persistent=True) as collector:
        with running_agent(path) as agent:
            wait_for(lambda: len(collector.seqs()) >= 20, what="readings before the outage")
            mosquitto.stop()
            assert agent.forwarder is not None
            forwarder = agent.forwarder
            wait_for(lambda: forwarder.state is not LinkState.CONNECTED, what="link down")
            spool = agent.spool
            assert spool is not None
            wait_for(lambda: spool.backlog > 10, what="readings piling up in the spool")
            mosquitto.start()
            wait_for(lambda: forwarder.state is LinkState.CONNECTED, 10, "reconnect")
            wait_for(lambda: agent.spool is not None and agent.spool.backlog == 0, 10, "drain")
        final = read_status(tmp_path / "spool.db")
        wait_for(
            lambda: set(collector.seqs()) >= set(range(1, final.next_seq)),
            10,
            "every reading at the collector",
        )
        seqs = collector.seqs()
    stored = first_occurrences(seqs)
    assert stored == list(range(1, final.next_seq))  # nothing lost, order kept
    assert forwarder.stats.connects >= 2
    # Only what was in flight when the broker died can arrive twice; the server dedups it.
    assert len(seqs) - len(stored) <= 16 * 10


def test_status_topic_online_offline_and_kill9(mqtt_url: str, tmp_path: Path) -> None:
    dev = device_id()
    path = write_config(tmp_path, device_id=dev, mqtt_url=mqtt_url, batch_interval_s=0.5)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def start_agent() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "device_client",
                "run",
                "-c",
                str(path),
                "--log-level",
                "WARNING",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    with (
        TestClient(mqtt_url) as watcher,
        TestClient(mqtt_url) as reports,
        Collector(mqtt_url, dev) as collector,
    ):
        watcher.subscribe(f"status/{dev}", qos=1)
        reports.subscribe(f"attributes/{dev}", qos=1)
        proc = start_agent()
        try:
            assert watcher.receive(1, 15)[0].payload == b"online"
            # What the agent says about itself, published (retained) on every connection.
            report = json.loads(reports.receive(1, 15)[0].payload)
            assert str(report["agent"]).startswith("telemetry-device ")
            wait_for(lambda: len(collector.seqs()) >= 20, 15, "readings before the kill")
            # Kill with readings sampled and not yet acknowledged (unsent or in flight).
            wait_for(lambda: read_status(tmp_path / "spool.db").depth_rows > 0, 15, "a backlog")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stderr is not None
            proc.stderr.close()
        assert watcher.receive(1, 10)[0].payload == b"offline"  # the Last Will
        after_kill = read_status(tmp_path / "spool.db")  # readable, consistent after kill -9
        proc = start_agent()
        try:
            assert watcher.receive(1, 15)[0].payload == b"online"
            wait_for(
                lambda: max(collector.seqs(), default=0) >= after_kill.next_seq + 10,
                15,
                "readings after the restart",
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stderr is not None
            err = proc.stderr.read().decode()
            proc.stderr.close()
        assert "Traceback" not in err
        assert watcher.receive(1, 10)[0].payload == b"offline"  # said goodbye
        final = read_status(tmp_path / "spool.db")
        wait_for(
            lambda: set(collector.seqs()) >= set(range(1, final.next_seq)), 10, "every reading"
        )
        items = list(collector.items)
    assert final.depth_rows == 0
    assert first_occurrences([int(i["seq"]) for i in items]) == list(range(1, final.next_seq))
    # A repeated seq is a re-send of the same reading, never a new reading reusing the number.
    by_seq: dict[int, dict[str, object]] = {}
    for item in items:
        assert by_seq.setdefault(int(item["seq"]), item) == item
