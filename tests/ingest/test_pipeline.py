"""The pipeline alone, with a writer that records what it is given: batching, bounds, failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from core.errors import StateError
from ingest.errors import OverloadedError, StorageUnavailableError
from ingest.pipeline import Outcome, Pipeline, PipelineSettings, Submission
from ingest.records import (
    AttributeReport,
    DeadLetter,
    DeviceUpdate,
    ReadingSet,
    TypedSet,
    WriteResult,
)

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


class RecordingWriter:
    """Keeps every batch; fails the next ``fail`` writes; a write waits while ``gate`` is clear."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[ReadingSet], list[DeviceUpdate], list[DeadLetter]]] = []
        self.fail = 0
        self.duplicates_of: set[int] = set()  # device keys whose readings are already stored
        self.gate = asyncio.Event()
        self.gate.set()

    async def write(
        self,
        sets: Sequence[ReadingSet],
        devices: Sequence[DeviceUpdate] = (),
        dead_letters: Sequence[DeadLetter] = (),
        *,
        typed: Sequence[TypedSet] = (),  # noqa: ARG002  (the protocol's signature)
        attributes: Sequence[AttributeReport] = (),  # noqa: ARG002
    ) -> WriteResult:
        await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise StorageUnavailableError("database unavailable (test)")
        self.batches.append((list(sets), list(devices), list(dead_letters)))
        per_set = [0 if key in self.duplicates_of else len(values) for key, _, values in sets]
        rows = sum(len(values) for _, _, values in sets)
        return WriteResult(sum(per_set), rows - sum(per_set), per_set)


def submission(device_key: int, readings: int, seq0: int = 0) -> Submission:
    sub = Submission(NOW)
    sub.sets += [(device_key, NOW, {f"m{i}": float(i)}) for i in range(readings)]
    sub.devices[device_key] = list(range(seq0, seq0 + readings))
    return sub


def counts(outcome: Outcome) -> tuple[int, int]:
    return outcome.accepted, outcome.duplicates


def pipeline(writer: RecordingWriter, **settings: float) -> Pipeline:
    defaults: dict[str, float] = {"flush_interval_s": 0.02, "max_queue_rows": 100}
    config = PipelineSettings(**(defaults | settings))  # type: ignore[arg-type]
    return Pipeline(writer, config, close_timeout_s=5)


async def test_submissions_that_arrive_together_share_a_batch_and_learn_their_own_count() -> None:
    writer = RecordingWriter()
    writer.duplicates_of = {2}
    async with pipeline(writer, flush_interval_s=0.5) as pipe:
        first, second = submission(1, 3), submission(2, 2)
        pipe.submit_nowait(first)
        pipe.submit_nowait(second)
        assert pipe.queued_rows == 5
        outcomes = await asyncio.gather(first.future, second.future)
        assert pipe.queued_rows == 0
    assert [counts(o) for o in outcomes] == [(3, 0), (0, 2)]
    assert [o.per_set for o in outcomes] == [[1, 1, 1], [0, 0]]  # each its own sets
    assert len(writer.batches) == 1
    sets, devices, _ = writer.batches[0]
    assert len(sets) == 5
    assert sorted((d.device_key, d.first_seq, d.last_seq) for d in devices) == [
        (1, 0, 2),
        (2, 0, 1),
    ]


async def test_a_full_batch_is_written_without_waiting_for_the_interval() -> None:
    writer = RecordingWriter()
    async with pipeline(writer, flush_interval_s=3600, max_batch_rows=4) as pipe:
        sub = submission(1, 4)
        pipe.submit_nowait(sub)
        assert counts(await sub.future) == (4, 0)


async def test_a_full_queue_pushes_back_and_makes_room_after_commit() -> None:
    writer = RecordingWriter()
    writer.gate.clear()  # nothing commits yet
    async with pipeline(writer, max_queue_rows=10) as pipe:
        held = submission(1, 8)
        pipe.submit_nowait(held)
        with pytest.raises(OverloadedError, match="queue full"):
            pipe.submit_nowait(submission(2, 5))
        waiting = asyncio.create_task(pipe.submit(submission(3, 5)))
        await asyncio.sleep(0)
        assert not waiting.done()  # MQTT's backpressure: it waits, unacknowledged
        writer.gate.set()
        await held.future
        await waiting
        assert pipe.queued_rows <= 10


async def test_a_failed_write_fails_its_submissions_and_frees_their_rows() -> None:
    writer = RecordingWriter()
    writer.fail = 1
    async with pipeline(writer) as pipe:
        sub = submission(1, 2)
        pipe.submit_nowait(sub)
        with pytest.raises(StorageUnavailableError):
            await sub.future
        assert pipe.queued_rows == 0
        again = submission(1, 2)
        pipe.submit_nowait(again)
        assert counts(await again.future) == (2, 0)


async def test_the_last_commit_time_moves_on_a_commit_and_not_on_a_failure() -> None:
    def last_commit() -> float:
        return REGISTRY.get_sample_value("ingest_last_commit_timestamp_seconds") or 0.0

    writer = RecordingWriter()
    async with pipeline(writer) as pipe:
        before = time.time()
        sub = submission(1, 2)
        pipe.submit_nowait(sub)
        await sub.future
        after = time.time()
        assert before <= last_commit() <= after
        committed = last_commit()
        writer.fail = 1
        failed = submission(1, 2)
        pipe.submit_nowait(failed)
        with pytest.raises(StorageUnavailableError):
            await failed.future
        assert last_commit() == committed


async def test_closing_commits_what_is_queued_then_refuses() -> None:
    writer = RecordingWriter()
    pipe = pipeline(writer, flush_interval_s=3600)
    async with pipe:
        queued = submission(1, 2)
        pipe.submit_nowait(queued)
    assert counts(queued.future.result()) == (2, 0)
    with pytest.raises(OverloadedError, match="shutting down"):
        pipe.submit_nowait(submission(1, 1))
    with pytest.raises(StateError, match="Pipeline"):
        await pipe.open()


async def test_drain_waits_for_every_commit_without_closing() -> None:
    writer = RecordingWriter()
    writer.gate.clear()
    async with pipeline(writer) as pipe:
        sub = submission(1, 1)
        pipe.submit_nowait(sub)
        assert not await pipe.drain(timeout_s=0.05)
        writer.gate.set()
        assert await pipe.drain(timeout_s=5)
        assert sub.future.done()
        later = submission(1, 1)
        pipe.submit_nowait(later)  # still open
        await later.future
