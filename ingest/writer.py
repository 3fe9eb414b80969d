"""Idempotent batch writer: binary COPY, with INSERT ... ON CONFLICT from staging for duplicates.

A batch is committed whole or not at all, together with its dead letters, the device
bookkeeping and the devices' own reports (attributes) it carries, so that one commit covers
everything an acknowledgement promises. Numbers go to ``readings`` by COPY; booleans and
strings, far fewer, to ``readings_typed`` by one INSERT from arrays. Retrying is safe: rows
already stored count as duplicates. The parts it is made of:

- :mod:`ingest.connections`: the pool, and retries of transient failures;
- :mod:`ingest.statements`: the SQL; :mod:`ingest.copy_rows`: the binary COPY encoding;
- :mod:`ingest.metric_keys`: the metric dictionary;
- :mod:`ingest.latest`: the newest value per key, folded after each commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, LiteralString, TypeVar

import psycopg
from psycopg import AsyncConnection, errors
from psycopg.rows import TupleRow

from core.lifecycle import AsyncResource
from ingest import maintenance, statements
from ingest.catalog import ValueType, value_type
from ingest.connections import Connections
from ingest.copy_rows import encode_readings
from ingest.latest import LatestValues
from ingest.metric_keys import MetricKeys
from ingest.metrics import METRICS
from ingest.records import (
    AttributeReport,
    DeadLetter,
    DeviceUpdate,
    ReadingSet,
    TypedSet,
    WriteResult,
)

__all__ = ["BatchWriter"]


class _DuplicateRowsError(Exception):
    """The direct COPY met a row that is already stored: take the deduplicating path."""


@dataclass(frozen=True, slots=True)
class _Batch:
    """One batch's parts, as the transaction writes them."""

    sets: Sequence[ReadingSet]
    typed: Sequence[TypedSet]
    devices: Sequence[DeviceUpdate]
    dead_letters: Sequence[DeadLetter]
    attributes: Sequence[AttributeReport]


@dataclass(frozen=True, slots=True)
class _Stored:
    """The new rows of each set and typed set; None where every row was new."""

    sets: list[ReadingSet] | None
    typed: list[TypedSet] | None


async def _configure(conn: AsyncConnection[TupleRow]) -> None:
    await conn.execute(statements.CREATE_STAGING)
    await conn.execute(statements.CREATE_STAGING_LATEST)
    await conn.commit()


class BatchWriter(AsyncResource):
    """Writes batches of readings through a connection pool; use as an async context manager."""

    def __init__(
        self,
        conninfo: str,
        *,
        mode: Literal["timescale", "plain"],
        pool_min: int = 2,
        pool_max: int = 8,
        retry_max_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        latest_flush_s: float = 1.0,
        latest_max_keys: int = 200_000,
    ) -> None:
        self.mode = mode
        self._connections = Connections(
            conninfo,
            configure=_configure,
            pool_min=pool_min,
            pool_max=pool_max,
            retry_max_s=retry_max_s,
            connect_timeout_s=connect_timeout_s,
        )
        self._metric_keys = MetricKeys()
        self.latest = LatestValues(
            self._connections, self._metric_keys, flush_s=latest_flush_s, max_keys=latest_max_keys
        )
        self._partition_days: set[date] = set()
        self._writes = 0  # in flight; close() flushes their latest values after them
        self._no_writes = asyncio.Event()
        self._no_writes.set()

    async def _open(self) -> None:
        await self._connections.open()
        await self.latest.open()

    async def _close(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._connections.retry_max_s + 5):
                await self._no_writes.wait()
        await self.latest.close()
        await self._connections.close()

    @contextlib.asynccontextmanager
    async def connection(self, timeout_s: float = 2.0) -> AsyncIterator[AsyncConnection[TupleRow]]:
        """Lend a pooled connection for a read; psycopg's errors come out as the ingest's."""
        async with self._connections.connection(timeout_s) as conn:
            yield conn

    async def flush_latest(self) -> None:
        """Store the newest committed value per device and metric in ``latest_readings`` now."""
        await self.latest.flush()

    async def write(
        self,
        sets: Sequence[ReadingSet],
        devices: Sequence[DeviceUpdate] = (),
        dead_letters: Sequence[DeadLetter] = (),
        *,
        typed: Sequence[TypedSet] = (),
        attributes: Sequence[AttributeReport] = (),
    ) -> WriteResult:
        """Store a batch in one transaction and return how many rows were new."""
        self._require_open()
        if self.latest.full:
            # Bounded: the caller waits (or is told to push back) before anything is stored.
            await self.latest.flush()
        batch = _Batch(sets, typed, devices, dead_letters, attributes)
        rows = sum(len(values) for _, _, values in sets)
        typed_rows = sum(len(values) for _, _, values in typed)
        self._writes += 1
        self._no_writes.clear()
        try:
            stored = await self._connections.retrying(
                lambda conn: self._write_once(conn, batch),
                again_at_once=self._partition_dropped,
            )
            # Only stored rows: a duplicate need not carry the value that was stored.
            self.latest.fold(sets if stored.sets is None else stored.sets)
            if typed:
                self.latest.fold(typed if stored.typed is None else stored.typed)
        finally:
            self._writes -= 1
            if not self._writes:
                self._no_writes.set()
        per_set = None if stored.sets is None else [len(v) for _, _, v in stored.sets]
        typed_per_set = None if stored.typed is None else [len(v) for _, _, v in stored.typed]
        accepted = (rows if per_set is None else sum(per_set)) + (
            typed_rows if typed_per_set is None else sum(typed_per_set)
        )
        return WriteResult(accepted, rows + typed_rows - accepted, per_set, typed_per_set)

    @property
    def metric_keys(self) -> MetricKeys:
        """The metric dictionary of this writer (the accept step reads whether it is full)."""
        return self._metric_keys

    async def write_dead_letters(self, dead_letters: Sequence[DeadLetter]) -> None:
        """Store dead letters alone (for messages that carried no valid reading)."""
        await self.write((), (), dead_letters)

    def _partition_dropped(self, exc: psycopg.Error) -> bool:
        """Say whether a row met a partition that retention just dropped (then forget them)."""
        dropped = (
            isinstance(exc, errors.CheckViolation)
            and bool(self._partition_days)
            and "no partition" in str(exc)
        )
        if dropped:
            self._partition_days.clear()
        return dropped

    async def _write_once(self, conn: AsyncConnection[TupleRow], batch: _Batch) -> _Stored:
        """Store the batch: the new rows of each set and typed set (None: all were new).

        Almost every batch has no duplicate, and COPY straight into readings runs at about
        twice the rate of INSERT ... ON CONFLICT, so that is tried first. A unique violation
        rolls the transaction back; the batch then goes through the staging table and one
        INSERT ... SELECT ... ON CONFLICT DO NOTHING, which skips the duplicates and returns
        the keys it stored, so each set (each caller) learns its own count.
        """
        keys: Mapping[str, int] = {}
        sets, typed = batch.sets, batch.typed
        if sets or typed:
            both = itertools.chain(sets, typed)
            names = itertools.chain.from_iterable(values for _, _, values in both)
            kinds = {
                name: value_type(value) for _, _, values in typed for name, value in values.items()
            }
            keys = await self._metric_keys.resolve(conn, names, kinds)
            if self.mode == "plain":
                await self._cover_partitions(
                    conn, [ts for _, ts, _ in itertools.chain(sets, typed)]
                )
        data = encode_readings(sets, keys)
        try:
            return await self._commit(conn, batch, data, keys)
        except _DuplicateRowsError:
            METRICS.batches_deduplicated.inc()
        return await self._commit(conn, batch, data, keys, merge=True)

    async def _commit(
        self,
        conn: AsyncConnection[TupleRow],
        batch: _Batch,
        data: bytes,
        keys: Mapping[str, int],
        *,
        merge: bool = False,
    ) -> _Stored:
        """One transaction: the rows (straight into readings, or ``merge``d), the rest after."""
        sets, devices, dead_letters = batch.sets, batch.devices, batch.dead_letters
        new_sets = new_typed = None
        async with conn.transaction():
            cur = conn.cursor()
            if sets and not merge:
                try:
                    await _copy(conn, statements.COPY_READINGS, data)
                except errors.UniqueViolation as exc:
                    raise _DuplicateRowsError from exc
            elif sets:
                await _copy(conn, statements.COPY_STAGING, data)
                new_sets = await _merge(conn, sets, keys)
            if batch.typed:
                new_typed = await _insert_typed(conn, batch.typed, keys)
            if sets and self.mode == "plain":
                minutes = {int(ts.timestamp()) // 60 for _, ts, _ in sets}
                await cur.execute(statements.MARK_DIRTY, [sorted(minutes)])
            if devices:
                await cur.execute(
                    statements.UPDATE_DEVICES,
                    [
                        [d.device_key for d in devices],
                        [d.last_seen for d in devices],
                        [d.first_seq for d in devices],
                        [d.last_seq for d in devices],
                        [d.seq_gaps for d in devices],
                    ],
                )
            if batch.attributes:
                await _update_attributes(conn, batch.attributes)
            if dead_letters:
                now = datetime.now(UTC)
                await cur.executemany(
                    statements.INSERT_DEAD_LETTER,
                    [
                        (
                            d.received_at or now,
                            d.source,
                            d.device_id,
                            d.item_index,
                            d.reason,
                            d.detail,
                            d.payload,
                        )
                        for d in dead_letters
                    ],
                )
        return _Stored(new_sets, new_typed)

    async def _cover_partitions(
        self, conn: AsyncConnection[TupleRow], stamps: Sequence[datetime]
    ) -> None:
        first, last = min(stamps).astimezone(UTC).date(), max(stamps).astimezone(UTC).date()
        known = self._partition_days
        if first in known and last in known and (last - first).days <= 1:
            return
        days = {ts.astimezone(UTC).date() for ts in stamps} - known
        if days:
            await maintenance.create_day_partitions(conn, days)
            known.update(days)


_V = TypeVar("_V")


async def _merge(
    conn: AsyncConnection[TupleRow], sets: Sequence[ReadingSet], keys: Mapping[str, int]
) -> list[ReadingSet]:
    """Move the staged rows into readings, skipping duplicates; return the new rows."""
    cur = await conn.execute(statements.MERGE_STAGING)
    return _stored_only(sets, keys, set(await cur.fetchall()))


async def _insert_typed(
    conn: AsyncConnection[TupleRow], typed: Sequence[TypedSet], keys: Mapping[str, int]
) -> list[TypedSet] | None:
    """Insert the booleans and strings, skipping duplicates; their new rows (None: all new)."""
    columns: tuple[list[object], ...] = ([], [], [], [], [])
    times, device_keys, metric_keys, bools, texts = columns
    for device_key, ts, values in typed:
        for name, value in values.items():
            times.append(ts)
            device_keys.append(device_key)
            metric_keys.append(keys[name])
            boolean = value_type(value) is ValueType.BOOLEAN
            bools.append(value if boolean else None)
            texts.append(None if boolean else value)
    cur = await conn.execute(statements.INSERT_TYPED, list(columns))
    stored = set(await cur.fetchall())
    if len(stored) == len(times):
        return None
    return _stored_only(typed, keys, stored)


def _stored_only(
    sets: Sequence[tuple[int, datetime, Mapping[str, _V]]],
    keys: Mapping[str, int],
    stored: set[tuple[Any, ...]],
) -> list[tuple[int, datetime, Mapping[str, _V]]]:
    """Each set with only the values whose (device, metric, time) key was ``stored``."""
    kept: list[tuple[int, datetime, Mapping[str, _V]]] = []
    for device_key, ts, values in sets:
        new = {}
        for name, value in values.items():
            key = (device_key, keys[name], ts)
            if key in stored:
                stored.discard(key)  # a key twice in one batch counts once
                new[name] = value
        kept.append((device_key, ts, new))
    return kept


async def _update_attributes(
    conn: AsyncConnection[TupleRow], reports: Sequence[AttributeReport]
) -> None:
    """Store each device's newest report of the batch (one row per device: the SQL locks)."""
    newest: dict[int, AttributeReport] = {}
    for report in reports:
        known = newest.get(report.device_key)
        if known is None or report.received_at >= known.received_at:
            newest[report.device_key] = report
    await conn.execute(
        statements.UPDATE_ATTRIBUTES,
        [
            list(newest),
            [r.attributes for r in newest.values()],
            [r.received_at for r in newest.values()],
        ],
    )


async def _copy(conn: AsyncConnection[TupleRow], statement: LiteralString, data: bytes) -> None:
    async with conn.cursor().copy(statement) as copy:
        await copy.write(data)
