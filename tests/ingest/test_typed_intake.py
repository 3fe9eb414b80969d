"""Booleans, strings, units, gateways and attribute reports through the MQTT intake.

The accept step, the pipeline and the writer are real, on both storage paths; only the
broker is stood in for (see ``test_mqtt_intake.Broker``), so each test sees exactly what
was acknowledged, stored and dead-lettered.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta

import psycopg
import pytest

from core.registry import create_device
from ingest.mqtt_intake import MqttIntake
from ingest.pipeline import Pipeline, PipelineSettings
from ingest.writer import BatchWriter
from tests.ingest.helpers import T0, fetch_all, mode_of
from tests.ingest.test_mqtt_intake import MAX_PAYLOAD, Broker, intake_on


@pytest.fixture
async def writer(db_url: str, storage_mode: str) -> AsyncIterator[BatchWriter]:
    async with BatchWriter(db_url, mode=mode_of(storage_mode), pool_min=1) as writer:
        async with writer.connection() as conn:
            await create_device(conn, "pump-1")
            await create_device(conn, "hub-1", gateway=True)
            for child in ("ble-1", "ble-2", "stranger"):
                await create_device(conn, child)
            await conn.execute(
                "UPDATE devices SET gateway_key = (SELECT device_key FROM devices"
                " WHERE device_id = 'hub-1') WHERE device_id IN ('ble-1', 'ble-2')"
            )
        yield writer


def at(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


async def run(writer: BatchWriter, *messages: tuple[str, object]) -> Broker:
    """Deliver ``messages`` (topic, JSON document or bytes), each asking for a receipt."""
    broker = Broker()
    pipe = Pipeline(writer, PipelineSettings(flush_interval_s=0.02))
    async with (
        pipe,
        MqttIntake(
            intake_on(pipe, writer),
            receive=broker.receive,
            ack=broker.ack,
            receipts=broker,
            max_payload_bytes=MAX_PAYLOAD,
        ),
    ):
        for topic, document in messages:
            payload = document if isinstance(document, bytes) else json.dumps(document).encode()
            device = topic.split("/")[1]
            broker.deliver((topic, payload), respond_to=f"receipts/{device}/r")
            await broker.wait_acked(len(broker.acked) + 1)
        await writer.latest.flush()
    return broker


def answers(broker: Broker) -> list[tuple[int, int, list[tuple[int, str]]]]:
    return [
        (
            body["accepted"],
            body["duplicates"],
            [(r["index"], r["reason"]) for r in body["rejected"]],
        )
        for _, _, body in broker.receipts
    ]


TYPED = "SELECT m.name, t.time, t.value_bool, t.value_text FROM readings_typed t"
TYPED += " JOIN metrics m USING (metric_key) ORDER BY 1, 2"


async def test_each_type_is_stored_as_itself_and_deduplicated(
    writer: BatchWriter, db_url: str
) -> None:
    v1 = {"ts": at(0), "values": {"t": 21.5, "on": True, "mode": "auto", "note": "é" * 128}}
    senml = [
        {"bn": "pump-1/", "bt": T0.timestamp() + 1, "n": "t", "v": 22.0},
        {"n": "on", "vb": False},
        {"n": "mode", "vs": "manual"},
        {"n": "blob", "vd": "aGkgCg"},
    ]
    broker = await run(
        writer,
        ("telemetry/pump-1", v1),
        ("telemetry/pump-1/senml", senml),
        ("telemetry/pump-1", v1),  # again: every value a duplicate
    )
    assert answers(broker) == [(4, 0, []), (4, 0, []), (0, 4, [])]
    assert await fetch_all(db_url, TYPED) == [
        ("blob", T0 + timedelta(seconds=1), None, "aGkgCg"),
        ("mode", T0, None, "auto"),
        ("mode", T0 + timedelta(seconds=1), None, "manual"),
        ("note", T0, None, "é" * 128),
        ("on", T0, True, None),
        ("on", T0 + timedelta(seconds=1), False, None),
    ]
    assert await fetch_all(db_url, "SELECT count(*) FROM readings") == [(2,)]
    kinds = await fetch_all(db_url, "SELECT name, value_type FROM metrics ORDER BY 1")
    assert kinds == [
        ("blob", "string"),
        ("mode", "string"),
        ("note", "string"),
        ("on", "boolean"),
        ("t", "number"),
    ]
    latest = await fetch_all(
        db_url,
        "SELECT m.name, l.value, l.value_bool, l.value_text FROM latest_readings l"
        " JOIN metrics m USING (metric_key) ORDER BY 1",
    )
    assert latest == [
        ("blob", None, None, "aGkgCg"),
        ("mode", None, None, "manual"),
        ("note", None, None, "é" * 128),
        ("on", None, False, None),
        ("t", 22.0, None, None),
    ]


async def test_the_first_reading_fixes_a_metric_s_type(writer: BatchWriter, db_url: str) -> None:
    broker = await run(
        writer,
        ("telemetry/pump-1", {"ts": at(0), "values": {"t": 1, "on": True}}),
        (
            "telemetry/pump-1",
            [
                {"ts": at(1), "values": {"t": "warm"}},
                {"ts": at(2), "values": {"on": 1}},
                {"ts": at(3), "values": {"t": True}},
                {"ts": at(4), "values": {"t": 2, "on": False}},
            ],
        ),
        (
            "telemetry/pump-1/senml",
            [{"bn": "pump-1/", "bt": T0.timestamp() + 5, "n": "t", "vs": "x"}],
        ),
    )
    assert answers(broker) == [
        (2, 0, []),
        (2, 0, [(0, "type_mismatch"), (1, "type_mismatch"), (2, "type_mismatch")]),
        (0, 0, [(0, "type_mismatch")]),
    ]
    letters = await fetch_all(db_url, "SELECT reason, detail FROM dead_letters ORDER BY id")
    assert [reason for reason, _ in letters] == ["type_mismatch"] * 4
    assert "metric 't' holds number values" in str(letters[0][1])


async def test_the_first_unit_of_a_device_s_metric_stays(writer: BatchWriter, db_url: str) -> None:
    broker = await run(
        writer,
        ("telemetry/pump-1", {"ts": at(0), "values": {"t": 20}, "units": {"t": "Cel"}}),
        (
            "telemetry/pump-1",
            [
                {"ts": at(1), "values": {"t": 21}},  # no unit: fine
                {"ts": at(2), "values": {"t": 70}, "units": {"t": "degF"}},
                {"ts": at(3), "values": {"t": 22}, "units": {"t": "Cel"}},
            ],
        ),
        ("telemetry/pump-1/senml", [{"bn": "pump-1/", "bu": "K", "n": "t", "v": 295, "t": -1}]),
        # Another device may give the same metric another unit.
        ("telemetry/ble-1/senml", [{"bn": "ble-1/", "bu": "K", "n": "t", "v": 295, "t": -1}]),
    )
    assert answers(broker) == [
        (1, 0, []),
        (2, 0, [(1, "unit_mismatch")]),
        (0, 0, [(0, "unit_mismatch")]),
        (1, 0, []),
    ]
    units = await fetch_all(
        db_url,
        "SELECT d.device_id, u.unit FROM metric_units u JOIN devices d USING (device_key)"
        " ORDER BY 1",
    )
    assert units == [("ble-1", "K"), ("pump-1", "Cel")]
    detail = await fetch_all(db_url, "SELECT detail FROM dead_letters ORDER BY id LIMIT 1")
    assert "'degF'" in str(detail[0][0])
    assert "'Cel'" in str(detail[0][0])


async def test_a_gateway_writes_for_its_children_and_is_refused_for_a_stranger(
    writer: BatchWriter, db_url: str
) -> None:
    broker = await run(
        writer,
        (
            "telemetry/hub-1",
            [
                {"device_id": "ble-1", "ts": at(0), "values": {"t": 1, "on": True}},
                {"device_id": "ble-2", "ts": at(0), "values": {"t": 2}},
                {"device_id": "stranger", "ts": at(0), "values": {"t": 3}},
                {"device_id": "nobody", "ts": at(0), "values": {"t": 4}},
                {"ts": at(0), "values": {"uptime": 5}},
            ],
        ),
        (
            "telemetry/hub-1/senml",
            [
                {"bn": "ble-1/", "bt": T0.timestamp() + 1, "n": "t", "v": 6},
                {"bn": "stranger/", "n": "t", "v": 7},
            ],
        ),
        # A device that is no gateway cannot speak for another.
        ("telemetry/pump-1", {"device_id": "ble-1", "ts": at(9), "values": {"t": 8}}),
    )
    assert answers(broker) == [
        (4, 0, [(2, "not_a_child"), (3, "not_a_child")]),
        (1, 0, [(1, "not_a_child")]),
        (0, 0, [(0, "device_mismatch")]),
    ]
    rows = await fetch_all(
        db_url,
        "SELECT d.device_id, m.name, r.value FROM readings r JOIN devices d USING (device_key)"
        " JOIN metrics m USING (metric_key) ORDER BY 1, 2, 3",
    )
    assert rows == [
        ("ble-1", "t", 1.0),
        ("ble-1", "t", 6.0),
        ("ble-2", "t", 2.0),
        ("hub-1", "uptime", 5.0),
    ]
    assert await fetch_all(db_url, "SELECT count(*) FROM readings_typed") == [(1,)]
    seen = await fetch_all(
        db_url, "SELECT device_id FROM devices WHERE last_seen IS NOT NULL ORDER BY 1"
    )
    # Children are heard through their gateway; a sender is heard even when refused.
    assert seen == [("ble-1",), ("ble-2",), ("hub-1",), ("pump-1",)]


async def test_attribute_reports_replace_the_last_and_stay_apart_from_metadata(
    writer: BatchWriter, db_url: str
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute('UPDATE devices SET metadata = \'{"site": "berlin"}\'')
    await run(
        writer,
        ("attributes/pump-1", {"agent": "1.0", "model": "pi4"}),
        ("attributes/pump-1", {"agent": "1.1"}),
        ("attributes/pump-1", b"[1, 2]"),  # not an object: a dead letter, the last report stays
        ("attributes/pump-1", b""),  # clearing the retained message: nothing to store
        ("attributes/deleted-long-ago", {"agent": "0.9"}),  # counted, not dead-lettered
    )
    rows = await fetch_all(
        db_url,
        "SELECT attributes, attributes_at IS NOT NULL, metadata FROM devices"
        " WHERE device_id = 'pump-1'",
    )
    assert rows == [({"agent": "1.1"}, True, {"site": "berlin"})]
    letters = await fetch_all(db_url, "SELECT device_id, reason FROM dead_letters")
    assert letters == [("pump-1", "schema")]
    assert await fetch_all(db_url, "SELECT count(*) FROM devices") == [(5,)]


async def test_a_reading_refused_for_its_type_fixes_no_unit(
    writer: BatchWriter, db_url: str
) -> None:
    broker = await run(
        writer,
        ("telemetry/pump-1", {"ts": at(0), "values": {"t": 1}}),
        ("telemetry/pump-1", {"ts": at(1), "values": {"t": "warm"}, "units": {"t": "Cel"}}),
        ("telemetry/pump-1", {"ts": at(2), "values": {"t": 2}, "units": {"t": "degF"}}),
    )
    assert answers(broker) == [(1, 0, []), (0, 0, [(0, "type_mismatch")]), (1, 0, [])]
    assert await fetch_all(db_url, "SELECT unit FROM metric_units") == [("degF",)]
