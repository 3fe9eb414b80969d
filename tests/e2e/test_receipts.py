"""Commit receipts over MQTT 5, end to end: the real ingest (2 workers), Mosquitto, PostgreSQL.

In the default configuration worker 0 receives and hands most messages to worker 1, so
receipts come from both workers' connections.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from simulator.services import MosquittoServer
from tests.e2e.helpers import (
    count_readings,
    new_device,
    readings,
    wait_for,
    wait_until,
)
from tests.support.mqtt import TestClient
from tests.support.processes import ServiceProcess
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.parametrize("storage_mode", ["plain"])


async def _metric(url: str, name: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _correlation(message: mqtt.MQTTMessage) -> bytes | None:
    correlation: bytes | None = getattr(message.properties, "CorrelationData", None)
    return correlation


def _body(count: int, seq0: int) -> bytes:
    return json.dumps(readings(count, seq0=seq0)).encode()


async def test_receipts_after_commit_say_what_was_stored_and_what_was_not(
    db_url: str, storage_mode: str, mqtt_url: str, ingest_factory: Callable[..., ServiceProcess]
) -> None:
    await new_device(db_url, "rc-1")
    ingest_factory(workers=2)
    half_bad = json.dumps([*readings(1, seq0=500), {"values": {"temperature": "warm"}}]).encode()
    with TestClient(mqtt_url) as device:
        device.subscribe("receipts/rc-1/#")
        mine = "receipts/rc-1/session-a"
        sent = [
            ("good", _body(5, 0)),
            ("again", _body(5, 0)),
            ("half", half_bad),
            ("broken", b"{not json"),
        ]
        for correlation, payload in sent:
            device.publish(
                "telemetry/rc-1", payload, response_topic=mine, correlation=correlation.encode()
            ).wait_for_publish(10)
            # One at a time: "again" must find "good" committed to count as duplicates.
            [receipt] = device.receive(1, timeout_s=20)
            assert receipt.topic == mine
            assert _correlation(receipt) == correlation.encode()
            answer = json.loads(receipt.payload)
            if correlation == "good":
                assert answer == {"accepted": 10, "duplicates": 0, "rejected": []}
            elif correlation == "again":
                assert answer == {"accepted": 0, "duplicates": 10, "rejected": []}
            elif correlation == "half":
                assert (answer["accepted"], answer["duplicates"]) == (2, 0)
                assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [
                    (1, "type_mismatch")
                ]
            else:
                assert answer["accepted"] == 0
                assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [
                    (-1, "malformed_json")
                ]
    assert count_readings(db_url) == 12


async def test_a_device_naming_another_device_s_receipts_topic_gets_nothing_there(
    db_url: str, storage_mode: str, mqtt_url: str, ingest_factory: Callable[..., ServiceProcess]
) -> None:
    await new_device(db_url, "rc-2")
    ingest = ingest_factory(workers=2)
    refused = await _metric(ingest.url, "ingest_receipts_refused_total")
    with TestClient(mqtt_url) as watcher, TestClient(mqtt_url) as device:
        watcher.subscribe("receipts/#")
        device.publish(
            "telemetry/rc-2", _body(3, 0), response_topic="receipts/rc-victim/x", correlation=b"1"
        ).wait_for_publish(10)
        device.publish("telemetry/rc-2", _body(3, 10)).wait_for_publish(10)  # asks for nothing
        await wait_for(lambda: count_readings(db_url) == 12, what="both messages stored")
        await wait_until(
            lambda: _metric(ingest.url, "ingest_receipts_refused_total"),
            lambda value: value == refused + 1,
            what="the refused receipt to be counted",
        )
        device.publish(
            "telemetry/rc-2", _body(3, 20), response_topic="receipts/rc-2/x", correlation=b"3"
        ).wait_for_publish(10)
        [receipt] = watcher.receive(1, timeout_s=20)
        assert (receipt.topic, _correlation(receipt)) == ("receipts/rc-2/x", b"3")
        assert watcher.messages.empty()  # nothing for the victim, nothing unasked


async def test_a_device_on_mqtt_3_1_1_is_stored_without_receipts(
    db_url: str, storage_mode: str, mqtt_url: str, ingest_factory: Callable[..., ServiceProcess]
) -> None:
    await new_device(db_url, "rc-311")
    ingest_factory(workers=2)
    with TestClient(mqtt_url, protocol=MQTTProtocolVersion.MQTTv311) as device:
        for i in range(20):
            device.publish("telemetry/rc-311", _body(2, 2 * i)).wait_for_publish(10)
    await wait_for(lambda: count_readings(db_url) == 80, what="every reading")


async def test_kill_9_between_the_commit_and_the_receipt_the_redelivery_gets_it(
    db_url: str,
    storage_mode: str,
    mqtt_url: str,
    mosquitto: MosquittoServer | None,
    ingest_factory: Callable[..., ServiceProcess],
    tcp_proxy: Callable[[str, int], TcpProxy],
) -> None:
    """The ingest commits, cannot send the receipt, and is killed: the device still gets one.

    The message waits in its batch (a long flush interval) while the ingest's connection to
    the broker is cut, so the commit happens with no way to send its PUBACK or its receipt;
    then the ingest is killed. The broker redelivers the message to the next ingest, which
    finds the readings stored (duplicates) and sends the receipt.
    """
    if mosquitto is None:
        pytest.skip("TEST_MQTT_URL names an external broker: no proxy in front of it")
    await new_device(db_url, "rc-kill")
    proxy = tcp_proxy("127.0.0.1", mosquitto.port)
    settings = {
        "flush_interval_s": "2.0",
        "mqtt_session_expiry_s": "600",
        "broker_url": f"mqtt://127.0.0.1:{proxy.port}",
    }
    first = ingest_factory(**settings)
    with TestClient(mqtt_url) as device:
        device.subscribe("receipts/rc-kill/#")
        device.publish(
            "telemetry/rc-kill", _body(4, 0), response_topic="receipts/rc-kill/k", correlation=b"k"
        ).wait_for_publish(10)
        await wait_until(
            lambda: _received(first.url),
            lambda received: received == 1,
            what="the message to wait in its batch",
        )
        proxy.stop()
        await wait_for(lambda: count_readings(db_url) == 8, what="the commit")
        assert first.child is not None
        first.child.kill()
        proxy.start()
        ingest_factory(mqtt_client_id=first.env["MQTT_CLIENT_ID"], **settings)
        [receipt] = device.receive(1, timeout_s=30)
        assert _correlation(receipt) == b"k"
        assert json.loads(receipt.payload) == {"accepted": 0, "duplicates": 8, "rejected": []}
    assert count_readings(db_url) == 8


async def _received(url: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    match = re.search(
        r'^ingest_messages_received_total\{source="mqtt"\} ([0-9.e+]+)$', text, re.MULTILINE
    )
    return float(match.group(1)) if match else 0.0


async def test_the_firmware_example_in_the_docs_gets_its_receipts(
    db_url: str, storage_mode: str, mqtt_url: str, ingest_factory: Callable[..., ServiceProcess]
) -> None:
    """docs/wire-protocol.md's paho example, run as written but for the broker's address."""
    await new_device(db_url, "pump-17")
    ingest_factory()
    docs = (Path(__file__).parents[2] / "docs" / "wire-protocol.md").read_text()
    code = docs.split("### Receipts", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    code = code.replace('c.connect("broker.example", 1883)', f'c.connect("{host}", {port})')
    namespace: dict[str, Any] = {}
    exec(compile(code, "wire-protocol.md", "exec"), namespace)
    try:
        namespace["send"]({"pressure": 2.1})
        namespace["send"]({"pressure": 2.2})
        await wait_for(lambda: not namespace["pending"], what="both receipts")
    finally:
        namespace["c"].loop_stop()
        namespace["c"].disconnect()
    assert count_readings(db_url) == 2
