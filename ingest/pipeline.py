"""The bounded path from intake to commit: submissions are batched and written together.

MQTT messages and HTTP requests each become a :class:`Submission` whose future resolves
only after the batch holding it has committed. The batcher flushes when a batch reaches
``max_batch_rows`` or when its oldest submission has waited ``flush_interval_s``; while
``max_concurrent_flushes`` batches are being written, new submissions gather into larger
batches. Queued and in-flight rows are bounded by ``max_queue_rows``: HTTP intake gets
:class:`OverloadedError` (a 503) when full, MQTT intake waits (and so stops acknowledging,
which makes the broker stop sending).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from core.lifecycle import AsyncResource, ResourceState
from ingest.errors import IngestError, OverloadedError
from ingest.metrics import METRICS
from ingest.records import (
    AttributeReport,
    DeadLetter,
    DeviceUpdate,
    ReadingSet,
    TypedSet,
    WriteResult,
)

__all__ = [
    "Outcome",
    "Pipeline",
    "PipelineSettings",
    "Span",
    "Submission",
    "Writer",
    "device_updates",
]

log = logging.getLogger(__name__)


class Writer(Protocol):
    """What the pipeline writes batches with (:class:`ingest.writer.BatchWriter`)."""

    async def write(
        self,
        sets: Sequence[ReadingSet],
        devices: Sequence[DeviceUpdate] = (),
        dead_letters: Sequence[DeadLetter] = (),
        *,
        typed: Sequence[TypedSet] = (),
        attributes: Sequence[AttributeReport] = (),
    ) -> WriteResult:
        """Store one batch in one transaction; raise an IngestError when it is not stored."""
        ...


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """Batching and bounds of the pipeline."""

    max_batch_rows: int = 5_000
    flush_interval_s: float = 0.05
    max_queue_rows: int = 200_000
    max_concurrent_flushes: int = 2


@dataclass(frozen=True, slots=True)
class Span:
    """Where one message's sets are in its submission: ``sets[start:end]``, likewise typed."""

    start: int
    end: int
    typed_start: int
    typed_end: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to the readings of one submission, after commit.

    ``per_set`` gives the new rows of each of its reading-sets, in order, when the batch
    held duplicates; None when every row was new. ``typed_per_set``: the same of its typed
    sets.
    """

    accepted: int
    duplicates: int
    per_set: Sequence[int] | None = None
    typed_per_set: Sequence[int] | None = None

    def counts(self, sub: Submission, span: Span) -> tuple[int, int]:
        """Return the new and the duplicate rows of one message's ``span`` of ``sub``."""
        rows = sum(len(values) for _, _, values in sub.sets[span.start : span.end])
        new = rows if self.per_set is None else sum(self.per_set[span.start : span.end])
        typed_rows = sum(len(v) for _, _, v in sub.typed[span.typed_start : span.typed_end])
        typed_new = (
            typed_rows
            if self.typed_per_set is None
            else sum(self.typed_per_set[span.typed_start : span.typed_end])
        )
        return new + typed_new, rows + typed_rows - new - typed_new


@dataclass(eq=False, slots=True)
class Submission:
    """Readings and dead letters of a request or of MQTT messages, and their commit's future.

    ``sets`` hold numbers and ``typed`` booleans and strings; ``devices`` maps each device
    heard to the seqs it sent, for the bookkeeping; ``attributes`` are devices' reports
    about themselves.
    """

    received_at: datetime
    sets: list[ReadingSet] = field(default_factory=list)
    typed: list[TypedSet] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    devices: dict[int, list[int]] = field(default_factory=dict)
    attributes: list[AttributeReport] = field(default_factory=list)
    newest_ts: datetime | None = None
    future: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def rows(self) -> int:
        """Rows this submission adds to a batch (dead letters and reports count one each)."""
        return (
            sum(len(values) for _, _, values in self.sets)
            + sum(len(values) for _, _, values in self.typed)
            + len(self.dead_letters)
            + len(self.attributes)
        )

    def span(self, start: int, typed_start: int) -> Span:
        """Return the span of the sets added since ``len(sets)`` and ``len(typed)`` were so."""
        return Span(start, len(self.sets), typed_start, len(self.typed))

    def add(
        self,
        device_key: int,
        ts: datetime,
        seq: int | None,
        values: Mapping[str, float],
        typed: Mapping[str, bool | str] | None,
    ) -> None:
        """Add one reading-set of ``device_key`` (its numbers, booleans and strings)."""
        if values:
            self.sets.append((device_key, ts, values))
        if typed:
            self.typed.append((device_key, ts, typed))
        seqs = self.devices.setdefault(device_key, [])
        if seq is not None:
            seqs.append(seq)
        if self.newest_ts is None or ts > self.newest_ts:
            self.newest_ts = ts


class Pipeline(AsyncResource):
    """Batches submissions and writes them with a :class:`Writer`.

    Open it (``async with``) to start the batcher; closing it stops taking submissions,
    flushes what is queued and waits up to ``close_timeout_s`` for every commit.
    """

    def __init__(
        self, writer: Writer, settings: PipelineSettings, *, close_timeout_s: float = 30.0
    ) -> None:
        self._writer = writer
        self.settings = settings
        self.close_timeout_s = close_timeout_s
        self._queue: asyncio.Queue[tuple[Submission, int]] = asyncio.Queue()
        self._rows = 0  # queued and being written
        self._space = asyncio.Condition()
        self._flush_slots = asyncio.Semaphore(settings.max_concurrent_flushes)
        self._flushes: set[asyncio.Task[None]] = set()
        self._batcher: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def queued_rows(self) -> int:
        """Rows accepted into the pipeline and not yet committed."""
        return self._rows

    def _closing(self) -> bool:
        return self._state is not ResourceState.OPEN

    async def _open(self) -> None:
        self._batcher = asyncio.create_task(self._run(), name="ingest-batcher")

    async def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything submitted so far has committed (or failed); False on timeout."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        return self._idle.is_set()

    async def _close(self) -> None:
        async with self._space:
            self._space.notify_all()  # submitters waiting for room give up
        await self.drain(self.close_timeout_s)
        if self._batcher is not None:
            self._batcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._batcher
        for task in list(self._flushes):
            task.cancel()
        if self._flushes:
            await asyncio.wait(self._flushes, timeout=5)
        if self._rows:
            log.error(
                "pipeline stopped with %d rows not committed (they were not acknowledged)",
                self._rows,
            )

    def submit_nowait(self, sub: Submission) -> None:
        """Queue ``sub`` or raise OverloadedError at once when the pipeline is full."""
        if self._closing():
            raise OverloadedError("shutting down")
        rows = sub.rows
        if self._rows and self._rows + rows > self.settings.max_queue_rows:
            METRICS.overloaded.inc()
            raise OverloadedError(
                f"ingest queue full ({self._rows} of {self.settings.max_queue_rows} rows)"
            )
        self._enqueue(sub, rows)

    async def submit(self, sub: Submission) -> None:
        """Queue ``sub``, waiting for room (MQTT: not acknowledging is the backpressure)."""
        rows = sub.rows
        async with self._space:
            await self._space.wait_for(
                lambda: (
                    self._closing()
                    or not self._rows
                    or self._rows + rows <= self.settings.max_queue_rows
                )
            )
        if self._closing():
            raise OverloadedError("shutting down")
        self._enqueue(sub, rows)

    def _enqueue(self, sub: Submission, rows: int) -> None:
        self._rows += rows
        self._idle.clear()
        METRICS.queue_rows.set(self._rows)
        self._queue.put_nowait((sub, rows))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        max_rows = self.settings.max_batch_rows
        while True:
            first = await self._queue.get()
            batch, rows = [first], first[1]
            deadline = loop.time() + self.settings.flush_interval_s
            while rows < max_rows:
                if self._queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0 or self._closing():
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                else:
                    item = self._queue.get_nowait()
                batch.append(item)
                rows += item[1]
            await self._flush_slots.acquire()
            # What queued while every slot was busy joins this batch: under load, batches
            # grow instead of waiting in line, and each costs its round trips only once.
            while rows < max_rows and not self._queue.empty():
                item = self._queue.get_nowait()
                batch.append(item)
                rows += item[1]
            task = asyncio.create_task(self._flush(batch), name="ingest-flush")
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[tuple[Submission, int]]) -> None:
        subs = [sub for sub, _ in batch]
        rows = sum(r for _, r in batch)
        try:
            await self._write(subs)
        finally:
            self._flush_slots.release()
            self._rows -= rows
            if not self._rows:
                self._idle.set()
            METRICS.queue_rows.set(self._rows)
            async with self._space:
                self._space.notify_all()

    async def _write(self, subs: list[Submission]) -> None:
        sets = [s for sub in subs for s in sub.sets]
        typed = [s for sub in subs for s in sub.typed]
        dead_letters = [d for sub in subs for d in sub.dead_letters]
        attributes = [a for sub in subs for a in sub.attributes]
        started = time.perf_counter()
        try:
            result = await self._writer.write(
                sets, device_updates(subs), dead_letters, typed=typed, attributes=attributes
            )
        except IngestError as exc:
            METRICS.flush_failures.inc()
            for sub in subs:
                if not sub.future.done():
                    sub.future.set_exception(exc)
            return
        except Exception as exc:  # a bug must fail the submissions, not hang them
            log.exception("batch write failed unexpectedly")
            for sub in subs:
                if not sub.future.done():
                    sub.future.set_exception(exc)
            return
        committed = time.time()
        METRICS.last_commit.set(committed)
        METRICS.flush_seconds.observe(time.perf_counter() - started)
        METRICS.batch_rows.observe(
            sum(len(v) for _, _, v in sets) + sum(len(v) for _, _, v in typed)
        )
        per_set, typed_per_set = result.accepted_per_set, result.typed_per_set
        index = typed_index = 0
        for sub in subs:
            own = None if per_set is None else per_set[index : index + len(sub.sets)]
            own_typed = (
                None
                if typed_per_set is None
                else typed_per_set[typed_index : typed_index + len(sub.typed)]
            )
            index += len(sub.sets)
            typed_index += len(sub.typed)
            outcome = Outcome(0, 0, own, own_typed)
            accepted, duplicates = outcome.counts(sub, sub.span(0, 0))
            if sub.newest_ts is not None:
                METRICS.commit_lag.observe(max(0.0, committed - sub.newest_ts.timestamp()))
            if not sub.future.done():
                sub.future.set_result(Outcome(accepted, duplicates, own, own_typed))
        METRICS.accepted.inc(result.accepted)
        METRICS.duplicates.inc(result.duplicates)


def device_updates(subs: list[Submission]) -> list[DeviceUpdate]:
    """One update per device in the batch: when heard, seq range, gaps inside the batch."""
    heard: dict[int, datetime] = {}
    seqs: dict[int, set[int]] = defaultdict(set)
    for sub in subs:
        for device_key, device_seqs in sub.devices.items():
            previous = heard.get(device_key)
            if previous is None or sub.received_at > previous:
                heard[device_key] = sub.received_at
            seqs[device_key].update(device_seqs)
    updates = []
    for key, seen in heard.items():
        got = seqs.get(key)
        if got:
            first, last = min(got), max(got)
            updates.append(DeviceUpdate(key, seen, first, last, (last - first + 1) - len(got)))
        else:
            updates.append(DeviceUpdate(key, seen))
    return updates
