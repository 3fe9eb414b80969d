"""Cost model: CPU microseconds per 1,000 readings in each stage of the MQTT path.

The readings come as the MQTT benchmark sends them: messages of 10 reading-sets of one
value, 100 messages per 1,000 readings. Each stage is timed on its own, in this process,
with ``time.process_time`` over ``--rounds`` x 1,000 readings (median of ``--runs``):

- ``mqtt_receive``: the ingest's own consumer (:class:`ingest.mqtt.MqttConsumer`, paho
  with :mod:`core.paho_speedups`, as a worker runs it) draining a QoS 1 backlog and
  acknowledging it: socket reads, MQTT 5 decoding, the inbox, PUBACKs;
- ``receipt_send``: a helper's receipt connection (:class:`ingest.receipts.ReceiptPublisher`)
  publishing a commit receipt for every message, 256 a commit, and reading their PUBACKs
  (what a message that asks for a receipt adds, besides its two properties);
- ``parse``: msgspec's compiled decoding of the messages into the wire module's typed
  structs (JSON, field types, the RFC 3339 pattern), as its fast path does;
- ``validate``: the rest of ``wire.parse_payload``: names, numbers, times read, items;
- ``batch``: items to a pipeline submission (the rest of ``intake.accept``) and the
  per-device bookkeeping of a batch (``pipeline.device_updates``);
- ``copy_encode``: the binary COPY buffer;
- ``copy_commit``: ``BatchWriter.write`` of 5,000-row batches of new rows, client CPU
  (encode included) and, as ``copy_commit_server``, the PostgreSQL backend's CPU;
- ``dedup``: the same batches written again, every row a duplicate (the COPY fails, the
  batch goes through the staging table and INSERT ... ON CONFLICT), client and server CPU.

Prints one JSON line. Needs PostgreSQL (``DATABASE_URL`` or a private one) and Mosquitto
(``MQTT_URL`` or a private one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psycopg

from benchmarks.common import broker, database_server, default_path, scratch_database
from benchmarks.ingest_mqtt import publish_backlog
from core import paho_speedups
from core.registry import DeviceRef
from ingest.catalog import Catalog
from ingest.copy_rows import encode_readings
from ingest.devices import DeviceDirectory
from ingest.intake import Intake, IntakeRules, accept
from ingest.mqtt import MqttConsumer
from ingest.pipeline import Pipeline, PipelineSettings, Submission, device_updates
from ingest.receipts import ReceiptPublisher, receipt_body
from ingest.records import ReadingSet, WriteResult
from ingest.settings import MqttSettings
from ingest.wire import Format, Limits, parse_payload
from ingest.wire.v1 import decode_valid_sets
from ingest.writer import BatchWriter
from tests.e2e.helpers import wait_for

READINGS_PER_MESSAGE = 10
MESSAGES = 100  # 1,000 readings
WRITE_BATCH_ROWS = 5_000
_WRITER_BACKENDS = """
SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND backend_type = 'client backend'
"""


def messages(start: datetime) -> list[bytes]:
    """100 messages of 10 reading-sets, as ingest_mqtt publishes them."""
    out = []
    for m in range(MESSAGES):
        base = start + timedelta(seconds=m * READINGS_PER_MESSAGE)
        items = [
            {"ts": (base + timedelta(seconds=k)).isoformat(), "seq": k, "values": {"v": float(k)}}
            for k in range(READINGS_PER_MESSAGE)
        ]
        out.append(json.dumps(items).encode())
    return out


def per_1000(work: Callable[[], object], rounds: int) -> float:
    """CPU µs of one call of ``work`` (which handles 1,000 readings)."""
    started = time.process_time()
    for _ in range(rounds):
        work()
    return (time.process_time() - started) / rounds * 1e6


async def mqtt_receive(url: str, messages: int) -> float:
    """CPU µs a message of the ingest's consumer draining a backlog and acknowledging it."""
    settings = MqttSettings(mqtt_url=url, mqtt_share_group="", mqtt_receive_window=5000)
    client_id = f"cost-{uuid.uuid4().hex[:8]}"
    async with MqttConsumer(settings, client_id) as consumer:  # the session and subscription
        await wait_for(lambda: consumer.subscribed, what="the subscription")
    publish_backlog(url, messages, datetime.now(UTC), receipts=False)
    async with MqttConsumer(settings, client_id) as consumer:
        got = 0
        started: float | None = None
        while got < messages:
            group = await consumer.receive()
            if started is None:
                started = time.process_time()
            got += len(group)
            consumer.ack(group)
        assert started is not None
        return (time.process_time() - started) / messages * 1e6


async def receipt_send(url: str, messages: int) -> float:
    """CPU µs a message of publishing its receipt and reading the PUBACK."""
    settings = MqttSettings(mqtt_url=url)
    body = receipt_body(READINGS_PER_MESSAGE, 0, [])
    async with ReceiptPublisher(settings, f"cost-{uuid.uuid4().hex[:8]}") as publisher:
        await wait_for(lambda: publisher.connected, what="the receipt connection")
        started = time.process_time()
        for first in range(0, messages, 256):
            publisher.send_receipts(
                [
                    (f"receipts/bench-{i % 100:05d}/cost", i.to_bytes(8, "big"), body)
                    for i in range(first, min(first + 256, messages))
                ]
            )
            await asyncio.sleep(0)  # a commit's receipts leave, PUBACKs come in meanwhile
        # The broker answers QoS 1 in order (MQTT 5, 4.6): once a message paho tracks is
        # acknowledged after them, so is every receipt.
        last = publisher._link.client.publish("receipts/cost/done", b"", qos=1)  # noqa: SLF001
        await wait_for(last.is_published, what="the PUBACKs")
        return (time.process_time() - started) / messages * 1e6


async def per_1000_awaited(work: Callable[[], Awaitable[object]], rounds: int) -> float:
    """CPU µs of one awaited call of ``work`` (which handles 1,000 readings)."""
    started = time.process_time()
    for _ in range(rounds):
        await work()
    return (time.process_time() - started) / rounds * 1e6


class _NoWriter:
    """The in-memory stages submit nothing: a writer that is never called."""

    async def write(self, *_args: object, **_kwargs: object) -> WriteResult:
        raise AssertionError("the in-memory stages write nothing")


def _no_database() -> AbstractAsyncContextManager[Any]:
    raise AssertionError("the in-memory stages look nothing up: every device and metric is known")


async def in_memory_stages(rounds: int) -> dict[str, float]:
    """Parse, validate, batch and encode: no I/O."""
    now = datetime.now(UTC)
    bodies = messages(now - timedelta(hours=1))
    catalog = Catalog(_no_database)
    catalog.numbers.add("v")  # as after the first message: its metric is known to the cache
    intake = Intake(
        pipeline=Pipeline(_NoWriter(), PipelineSettings()),
        devices=DeviceDirectory(_no_database),
        catalog=catalog,
        rules=IntakeRules(limits=Limits(), retention=timedelta(days=30)),
    )

    def parse() -> None:
        for body in bodies:
            decode_valid_sets(body)

    def parse_and_validate() -> None:
        for body in bodies:
            parse_payload(body, Format.JSON, "bench-00001", now)

    devices = [DeviceRef(key, "bench-00001") for key in range(len(bodies))]

    async def accept_all() -> Submission:
        sub = Submission(now)
        for device, body in zip(devices, bodies, strict=True):
            await accept(sub, body, Format.JSON, device, source="mqtt", intake=intake)
        device_updates([sub])
        return sub

    sets = (await accept_all()).sets
    parse_us = per_1000(parse, rounds)
    parse_and_validate_us = per_1000(parse_and_validate, rounds)
    return {
        "parse": parse_us,
        "validate": parse_and_validate_us - parse_us,
        # The accept step less its parse: items into a submission, the device bookkeeping.
        "batch": await per_1000_awaited(accept_all, rounds) - parse_and_validate_us,
        "copy_encode": per_1000(lambda: encode_readings(sets, {"v": 1}), rounds),
    }


def _cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


async def writer_stages(
    url: str, mode: Literal["plain", "timescale"], rows: int
) -> dict[str, float]:
    """Client and server CPU of writing new rows, then the same rows again (all duplicates)."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    sets: list[ReadingSet] = [
        (1 + i % 100, start + timedelta(milliseconds=i), {"v": float(i)}) for i in range(rows)
    ]
    batches = [sets[i : i + WRITE_BATCH_ROWS] for i in range(0, rows, WRITE_BATCH_ROWS)]
    out: dict[str, float] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO devices (device_id) SELECT 'c-' || g FROM generate_series(1, 100) g"
        )
        async with BatchWriter(url, mode=mode, pool_min=1, pool_max=1) as writer:
            await writer.write([(1, start - timedelta(hours=1), {"v": 0.0})])  # the metric key
            cur = await conn.execute(_WRITER_BACKENDS)
            backends = [int(pid) for (pid,) in await cur.fetchall()]
            for stage in ("copy_commit", "dedup"):
                client, server = time.process_time(), _cpu_s(backends)
                for batch in batches:
                    result = await writer.write(batch)
                    expected_new = len(batch) if stage == "copy_commit" else 0
                    if result.accepted != expected_new:
                        raise RuntimeError(f"{stage}: {result} for {len(batch)} rows")
                out[stage] = (time.process_time() - client) / rows * 1e9
                out[f"{stage}_server"] = (_cpu_s(backends) - server) / rows * 1e9
    return out


def main() -> int:
    """Measure each stage and print one JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="1,000 readings each")
    parser.add_argument("--rows", type=int, default=200_000, help="rows written a run")
    parser.add_argument("--messages", type=int, default=20_000, help="MQTT backlog a run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs: list[dict[str, float]] = []
    paho_speedups.install()
    with database_server() as admin, broker() as mqtt_url:
        mode = default_path(admin)
        for _ in range(args.runs):
            stages = {"mqtt_receive": asyncio.run(mqtt_receive(mqtt_url, args.messages))}
            stages["mqtt_receive"] *= MESSAGES
            stages["receipt_send"] = asyncio.run(receipt_send(mqtt_url, args.messages)) * MESSAGES
            stages |= asyncio.run(in_memory_stages(args.rounds))
            with scratch_database(admin, mode) as url:
                stages |= asyncio.run(writer_stages(url, mode, args.rows))
            runs.append(stages)
    print(
        json.dumps(
            {
                "benchmark": "cost_model",
                "path": mode,
                "runs": args.runs,
                "readings_per_message": READINGS_PER_MESSAGE,
                "cpu_us_per_1000_readings": {
                    key: round(statistics.median(run[key] for run in runs)) for key in runs[0]
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
