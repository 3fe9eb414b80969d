"""MQTT intake in process: deliveries in, the accept step, commit, then acknowledgement.

No broker: the test hands deliveries to :class:`MqttIntake` through its ``receive``
callable and collects what it acknowledges through ``ack``; the writer is real.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from core.registry import create_device
from ingest.catalog import Catalog
from ingest.devices import DeviceDirectory
from ingest.errors import StorageUnavailableError
from ingest.intake import Intake, IntakeRules
from ingest.mqtt import Delivery
from ingest.mqtt_intake import MqttIntake
from ingest.pipeline import Pipeline, PipelineSettings
from ingest.records import (
    AttributeReport,
    DeadLetter,
    DeviceUpdate,
    ReadingSet,
    TypedSet,
    WriteResult,
)
from ingest.wire import Limits
from ingest.writer import BatchWriter
from tests.ingest.helpers import T0, fetch_all, mode_of

MAX_PAYLOAD = 4096


class Broker:
    """Stands in for the consumer: queues deliveries for ``receive``, records ``ack``."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[list[Delivery]] = asyncio.Queue()
        self.acked: list[Delivery] = []
        self.receipts: list[tuple[str, bytes | None, dict[str, Any]]] = []
        self._acked = asyncio.Event()
        self._mid = 0

    async def receive(self) -> list[Delivery]:
        return await self.inbox.get()

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        self.acked += deliveries
        self._acked.set()

    def send_receipts(self, receipts: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        self.receipts += [(topic, corr, json.loads(body)) for topic, corr, body in receipts]

    def deliver(
        self, *messages: tuple[str, bytes], respond_to: str | None = None
    ) -> list[Delivery]:
        group = []
        for topic, payload in messages:
            self._mid += 1
            correlation = None if respond_to is None else str(self._mid).encode()
            group.append(Delivery(topic, payload, self._mid, 1, 1, respond_to, correlation))
        self.inbox.put_nowait(group)
        return group

    async def wait_acked(self, count: int) -> None:
        async with asyncio.timeout(20):
            while len(self.acked) < count:
                self._acked.clear()
                await self._acked.wait()


def body(seq0: int, count: int = 2) -> bytes:
    items = [
        {"ts": (T0 + timedelta(seconds=seq0 + i)).isoformat(), "seq": seq0 + i, "values": {"t": 1}}
        for i in range(count)
    ]
    return json.dumps(items).encode()


def received() -> float:
    return REGISTRY.get_sample_value("ingest_messages_received_total", {"source": "mqtt"}) or 0.0


@pytest.fixture
async def writer(db_url: str, storage_mode: str) -> AsyncIterator[BatchWriter]:
    async with BatchWriter(db_url, mode=mode_of(storage_mode), pool_min=1) as writer:
        async with writer.connection() as conn:
            await create_device(conn, "pump-1")
        yield writer


def intake_on(pipeline: Pipeline, writer: BatchWriter) -> Intake:
    rules = IntakeRules(limits=Limits(max_future_skew_s=300), retention=timedelta(days=36500))
    return Intake(pipeline, DeviceDirectory(writer.connection), Catalog(writer.connection), rules)


async def test_messages_are_acknowledged_only_after_their_commit(
    writer: BatchWriter, db_url: str
) -> None:
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
        good = broker.deliver(("telemetry/pump-1", body(0)), ("telemetry/pump-1", body(2)))
        refused = broker.deliver(
            ("telemetry/stranger", body(0)),  # not registered
            ("status/pump-1", body(0)),  # not a telemetry topic
            ("telemetry/pump-1", b"x" * (MAX_PAYLOAD + 1)),
            ("telemetry/pump-1", b"{not json"),
        )
        await broker.wait_acked(6)
        # Everything it acknowledged is in the database: readings or dead letters.
        stored = await fetch_all(db_url, "SELECT count(*) FROM readings")
        reasons = await fetch_all(db_url, "SELECT reason FROM dead_letters ORDER BY id")
    assert broker.acked == good + refused
    assert stored == [(4,)]
    assert [r for (r,) in reasons] == [
        "unknown_device",
        "invalid_topic",
        "too_large",
        "malformed_json",
    ]


async def test_a_group_not_stored_stays_unacknowledged_and_is_tried_again_once_counted(
    writer: BatchWriter, db_url: str
) -> None:
    broker = Broker()
    failing = Failing(writer, failures=1)
    pipe = Pipeline(failing, PipelineSettings(flush_interval_s=0.02))
    before = received()
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
        sent = broker.deliver(("telemetry/pump-1", body(0)))
        await broker.wait_acked(1)
    assert failing.attempts == 2  # failed once, then stored on the retry
    assert broker.acked == sent
    assert received() - before == 1  # a message is counted once, not once per attempt
    assert await fetch_all(db_url, "SELECT count(*) FROM readings") == [(2,)]


class Failing:
    """A writer whose first ``failures`` writes fail as if the database were down."""

    def __init__(self, writer: BatchWriter, failures: int) -> None:
        self.writer = writer
        self.failures = failures
        self.attempts = 0

    async def write(
        self,
        sets: Sequence[ReadingSet],
        devices: Sequence[DeviceUpdate] = (),
        dead_letters: Sequence[DeadLetter] = (),
        *,
        typed: Sequence[TypedSet] = (),
        attributes: Sequence[AttributeReport] = (),
    ) -> WriteResult:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise StorageUnavailableError("database unavailable (test)")
        return await self.writer.write(
            sets, devices, dead_letters, typed=typed, attributes=attributes
        )


async def test_receipts_follow_the_commit_and_go_only_to_the_device_s_own_topic(
    writer: BatchWriter, db_url: str
) -> None:
    broker = Broker()
    pipe = Pipeline(writer, PipelineSettings(flush_interval_s=0.02))
    intake = intake_on(pipe, writer)
    refused_before = REGISTRY.get_sample_value("ingest_receipts_refused_total") or 0.0
    async with (
        pipe,
        MqttIntake(
            intake,
            receive=broker.receive,
            ack=broker.ack,
            receipts=broker,
            max_payload_bytes=MAX_PAYLOAD,
        ),
    ):
        half_bad = json.dumps(
            [
                {"ts": (T0 + timedelta(hours=1)).isoformat(), "values": {"t": 1}},
                {"values": {"t": "x"}},
            ]
        ).encode()
        broker.deliver(("telemetry/pump-1", body(0)), respond_to="receipts/pump-1/r")
        await broker.wait_acked(1)
        broker.deliver(
            ("telemetry/pump-1", body(0)),  # again: duplicates
            ("telemetry/pump-1", half_bad),
            ("telemetry/pump-1", b"{oops"),
            respond_to="receipts/pump-1/r",
        )
        broker.deliver(("telemetry/pump-1", body(9)), respond_to="receipts/pump-2/r")  # not its own
        broker.deliver(("telemetry/pump-1", body(20)))  # asks for nothing
        await broker.wait_acked(6)
    by_correlation = {c: (topic, b) for topic, c, b in broker.receipts}
    assert set(by_correlation) == {b"1", b"2", b"3", b"4"}
    assert all(topic == "receipts/pump-1/r" for topic, _ in by_correlation.values())
    assert by_correlation[b"1"][1] == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert by_correlation[b"2"][1] == {"accepted": 0, "duplicates": 2, "rejected": []}
    half = by_correlation[b"3"][1]
    assert (half["accepted"], half["duplicates"]) == (1, 0)
    # t holds numbers since its first reading: a string of it is refused.
    assert [(r["index"], r["reason"]) for r in half["rejected"]] == [(1, "type_mismatch")]
    whole = by_correlation[b"4"][1]
    assert [(r["index"], r["reason"]) for r in whole["rejected"]] == [(-1, "malformed_json")]
    assert (REGISTRY.get_sample_value("ingest_receipts_refused_total") or 0.0) == refused_before + 1
