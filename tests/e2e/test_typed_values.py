"""Booleans, strings, units, gateways and attribute reports through a real ingest process.

Each kind of value over MQTT (v1 and SenML) and HTTP (v1 and SenML), the reason codes of
conflicts, a gateway writing for its child, and a device's report about itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiohttp
import psycopg

from core.registry import create_device
from tests.e2e.helpers import NOW, new_device, post, query, wait_for
from tests.support.mqtt import TestClient
from tests.support.processes import ServiceProcess

TYPED = (
    "SELECT d.device_id, m.name, t.value_bool, t.value_text FROM readings_typed t"
    " JOIN metrics m USING (metric_key) JOIN devices d USING (device_key) ORDER BY 1, 2, t.time"
)


def at(seconds: int) -> str:
    return (NOW - timedelta(minutes=10) + timedelta(seconds=seconds)).isoformat()


def senml(device_id: str, seconds: int, *records: dict[str, Any]) -> list[dict[str, Any]]:
    base = (NOW - timedelta(minutes=10)).timestamp() + seconds
    return [{"bn": f"{device_id}/", "bt": base, **records[0]}, *records[1:]]


async def test_each_type_over_mqtt_and_http_in_both_formats(
    db_url: str, mqtt_url: str, ingest_factory: Callable[..., ServiceProcess]
) -> None:
    token = await new_device(db_url, "pump-1")
    ingest = ingest_factory()
    v1 = {"ts": at(0), "values": {"t": 21.5, "on": True, "mode": "auto"}, "units": {"t": "Cel"}}
    status, body, _ = await post(ingest.url, token, v1)
    assert (status, body["accepted"], body["rejected"]) == (200, 3, [])
    pack = senml("pump-1", 1, {"n": "on", "vb": False}, {"n": "mode", "vs": "manual"})
    status, body, _ = await post(ingest.url, token, pack, content_type="application/senml+json")
    assert (status, body["accepted"]) == (200, 2)
    conflicts = [
        {"ts": at(2), "values": {"t": 70}, "units": {"t": "degF"}},
        {"ts": at(3), "values": {"on": "yes"}},
        {"ts": at(4), "values": {"mode": "x" * 257}},
    ]
    status, body, _ = await post(ingest.url, token, conflicts)
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == [
        (0, "unit_mismatch"),
        (1, "type_mismatch"),
        (2, "too_long"),
    ]
    with TestClient(mqtt_url) as pub:
        message = {"ts": at(5), "values": {"on": True, "mode": "maintenance", "t": 22}}
        pub.publish("telemetry/pump-1", json.dumps(message).encode()).wait_for_publish(10)
        pack = senml("pump-1", 6, {"n": "mode", "vs": "auto"}, {"n": "t", "u": "Cel", "v": 23})
        pub.publish("telemetry/pump-1/senml", json.dumps(pack).encode()).wait_for_publish(10)
    await wait_for(lambda: len(query(db_url, TYPED)) == 7, what="7 typed readings")
    assert query(db_url, TYPED) == [
        ("pump-1", "mode", None, "auto"),
        ("pump-1", "mode", None, "manual"),
        ("pump-1", "mode", None, "maintenance"),
        ("pump-1", "mode", None, "auto"),
        ("pump-1", "on", True, None),
        ("pump-1", "on", False, None),
        ("pump-1", "on", True, None),
    ]
    numbers = query(db_url, "SELECT value FROM readings ORDER BY time")
    assert numbers == [(21.5,), (22.0,), (23.0,)]
    assert query(db_url, "SELECT unit FROM metric_units") == [("Cel",)]


async def test_a_gateway_sends_for_its_child_and_not_for_a_stranger(
    db_url: str, mqtt_url: str, ingest_factory: Callable[..., ServiceProcess]
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        hub = await create_device(conn, "hub-1", gateway=True)
        await create_device(conn, "ble-1")
        await create_device(conn, "other-1")
        await conn.execute(
            "UPDATE devices SET gateway_key = (SELECT device_key FROM devices"
            " WHERE device_id = 'hub-1') WHERE device_id = 'ble-1'"
        )
    ingest = ingest_factory()
    batch = [
        {"device_id": "ble-1", "ts": at(0), "values": {"t": 1.0}},
        {"device_id": "other-1", "ts": at(0), "values": {"t": 2.0}},
    ]
    status, body, _ = await post(ingest.url, hub.token, batch)
    assert (status, body["accepted"]) == (200, 1)
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == [(1, "not_a_child")]
    with TestClient(mqtt_url) as pub:
        pack = senml("ble-1", 1, {"n": "on", "vb": True})
        pub.publish("telemetry/hub-1/senml", json.dumps(pack).encode()).wait_for_publish(10)
    await wait_for(lambda: len(query(db_url, TYPED)) == 1, what="the child's boolean")
    assert query(db_url, TYPED) == [("ble-1", "on", True, None)]
    stored = query(db_url, "SELECT d.device_id FROM readings JOIN devices d USING (device_key)")
    assert stored == [("ble-1",)]


async def test_attributes_over_http_and_a_retained_mqtt_report(
    db_url: str, mqtt_url: str, ingest_factory: Callable[..., ServiceProcess]
) -> None:
    token = await new_device(db_url, "pi-1")
    await new_device(db_url, "pi-2")
    ingest = ingest_factory()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        url = f"{ingest.url}/v1/attributes"
        async with session.put(url, data=b'{"agent": "1.2", "model": "pi4"}', headers=headers) as r:
            assert r.status == 204
        async with session.put(url, data=b"[1]", headers=headers) as r:
            assert (r.status, (await r.json())["error"]) == (400, "schema")
    with TestClient(mqtt_url) as pub:
        report = json.dumps({"agent": "1.3"}).encode()
        pub.publish("attributes/pi-2", report, retain=True).wait_for_publish(10)

        def reported() -> list[tuple[Any, ...]]:
            return query(db_url, "SELECT device_id, attributes FROM devices ORDER BY 1")

        await wait_for(
            lambda: (
                reported()
                == [("pi-1", {"agent": "1.2", "model": "pi4"}), ("pi-2", {"agent": "1.3"})]
            ),
            what="both reports",
        )
        # Clear the retained message: later tests' subscriptions should not get it.
        pub.publish("attributes/pi-2", b"", retain=True).wait_for_publish(10)
