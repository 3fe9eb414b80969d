"""The agent and commit receipts: a row leaves the spool on its receipt, not on the PUBACK."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from device_client import read_status
from simulator.services import MosquittoServer
from tests.device_client.helpers import Platform, running_agent, wait_for, write_config
from tests.support.mqtt import TestClient


def device_id() -> str:
    return f"rcpt-{uuid.uuid4().hex[:8]}"


def test_a_batch_leaves_the_spool_on_its_receipt_and_is_sent_again_without_one(
    mqtt_url: str, tmp_path: Path
) -> None:
    dev = device_id()
    path = write_config(
        tmp_path, device_id=dev, mqtt_url=mqtt_url, receipts="on", receipt_timeout_s=1.0
    )
    with Platform(mqtt_url, dev) as platform:
        platform.answering.clear()  # the broker acknowledges, the platform does not (yet)
        with running_agent(path) as agent:
            wait_for(lambda: len(set(platform.seqs())) >= 30, what="messages through the broker")
            spool = agent.spool
            assert spool is not None
            assert spool.backlog >= 30  # PUBACKed, not committed: still in the spool
            platform.answering.set()
            wait_for(lambda: spool.backlog == 0 or platform.receipts > 10, what="receipts")
            wait_for(lambda: platform.receipts >= 3, what="the resent batches answered")
        final = read_status(tmp_path / "spool.db")
        seqs = platform.seqs()
    assert len(seqs) > len(set(seqs))  # sent again: the first copies had no receipt
    assert set(range(1, 31)) <= set(seqs)
    assert final.counters["sent_total"] >= 30


def test_a_refused_item_is_logged_and_leaves_the_spool(
    mqtt_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dev = device_id()
    path = write_config(tmp_path, device_id=dev, mqtt_url=mqtt_url, receipts="on")
    with Platform(mqtt_url, dev, refuse=frozenset({5})) as platform, running_agent(path):
        wait_for(lambda: platform.receipts >= 3, what="receipts")
    status = read_status(tmp_path / "spool.db")
    assert status.counters["rejected_total"] == 1
    assert "server rejected seq 5: schema refused by the test" in caplog.text


def test_auto_counts_on_the_puback_where_the_platform_announces_no_receipts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker of our own: the session broker may hold an ingest's retained announcement."""
    caplog.set_level(logging.INFO)
    dev = device_id()
    with MosquittoServer(tmp_path / "broker") as broker:
        path = write_config(tmp_path, device_id=dev, mqtt_url=broker.url, receipts="auto")
        with Platform(broker.url, dev) as platform, running_agent(path):
            platform.answering.clear()  # no receipts at all: an older platform
            wait_for(lambda: len(platform.seqs()) >= 20, what="messages")
        status = read_status(tmp_path / "spool.db")
    assert status.depth_rows < 10  # counted on the PUBACK: gone from the spool
    assert "does not announce commit receipts" in caplog.text
    assert caplog.text.count("does not announce commit receipts") == 1  # one line, not many


def test_auto_waits_for_receipts_where_the_platform_announces_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    dev = device_id()
    with MosquittoServer(tmp_path / "broker") as broker:
        with TestClient(broker.url) as ingest:
            ingest.publish("platform/receipts", b"1", retain=True).wait_for_publish(10)
        path = write_config(tmp_path, device_id=dev, mqtt_url=broker.url, receipts="auto")
        with Platform(broker.url, dev) as platform, running_agent(path):
            wait_for(lambda: platform.receipts >= 3, what="receipts")
        status = read_status(tmp_path / "spool.db")
    assert status.counters["sent_total"] >= 3  # counted on receipts
    assert "batches count on their commit receipt" in caplog.text
