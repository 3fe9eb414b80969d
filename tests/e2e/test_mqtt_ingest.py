"""MQTT intake end to end: real Mosquitto, a real ingest process and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.e2e.helpers import count_readings, new_device, query, readings, reasons, wait_for
from tests.support.mqtt import TestClient
from tests.support.processes import ServiceProcess


async def test_messages_are_stored_once_and_acknowledged(
    db_url: str, storage_mode: str, mqtt_url: str, ingest_factory: Callable[..., ServiceProcess]
) -> None:
    await new_device(db_url, "pump-1")
    ingest_factory()
    with TestClient(mqtt_url) as pub:
        infos = [
            pub.publish("telemetry/pump-1", json.dumps(readings(10, seq0=10 * i)).encode())
            for i in range(20)
        ]
        for info in infos:
            info.wait_for_publish(10)
        # The same messages again: redeliveries are deduplicated.
        pub.publish("telemetry/pump-1", json.dumps(readings(10)).encode()).wait_for_publish(10)
    await wait_for(lambda: count_readings(db_url) == 400, what="400 readings")
    await wait_for(
        lambda: query(db_url, "SELECT last_seq FROM devices") == [(199,)], what="bookkeeping"
    )
    assert count_readings(db_url) == 400


async def test_every_bad_message_lands_in_dead_letters(
    db_url: str, mqtt_url: str, ingest_factory: Callable[..., ServiceProcess]
) -> None:
    await new_device(db_url, "dev-1")
    ingest_factory(mqtt_max_payload_bytes="2048")
    bad = {
        "telemetry/stranger": b'{"values": {"t": 1}}',
        "telemetry/dev-1": b"not json",
        "telemetry/dev-1/senml": b'[{"n": "s", "vs": "' + b"x" * 300 + b'"}]',
        "telemetry/dev-1/x/y": b"{}",
        "telemetry/bad id!": b"{}",
    }
    with TestClient(mqtt_url) as pub:
        for topic, payload in bad.items():
            pub.publish(topic, payload).wait_for_publish(10)
        pub.publish("telemetry/dev-1", b"[" + b"1," * 2000 + b"1]").wait_for_publish(10)
        pub.publish(
            "telemetry/dev-1", json.dumps([{"values": {"t": float("nan")}}]).encode()
        ).wait_for_publish(10)
    await wait_for(lambda: len(reasons(db_url)) == 7, what="7 dead letters")
    assert sorted(reasons(db_url)) == sorted(
        [
            "unknown_device",
            "malformed_json",
            "too_long",
            "invalid_topic",
            "invalid_name",
            "too_large",
            "non_finite",
        ]
    )
    sources = query(db_url, "SELECT DISTINCT source FROM dead_letters")
    assert sources == [("mqtt",)]


@pytest.mark.parametrize("storage_mode", ["plain"])
async def test_auto_register(
    db_url: str, storage_mode: str, mqtt_url: str, ingest_factory: Callable[..., ServiceProcess]
) -> None:
    ingest_factory(auto_register="true")
    with TestClient(mqtt_url) as pub:
        pub.publish("telemetry/newcomer", json.dumps(readings(3)).encode()).wait_for_publish(10)
    await wait_for(lambda: count_readings(db_url) == 6, what="6 readings")
    assert query(db_url, "SELECT device_id, token_hash FROM devices") == [("newcomer", None)]
