"""Idempotent batch writer: binary COPY, with INSERT ... ON CONFLICT from staging for duplicates.

A batch is committed whole or not at all, together with its dead letters and the device
bookkeeping it carries, so that one commit covers everything an acknowledgement promises.
The newest value per device and metric (``latest_readings``) is derived data: committed
batches fold it in memory and a background task upserts it once every ``latest_flush_s``,
which costs one row per key a second instead of one per key a batch.
Transient failures (connection lost, server restarting, deadlock) are retried with capped,
jittered backoff for ``retry_max_s``; after that :class:`StorageUnavailableError` tells the
caller to push back. Retrying is safe: rows already stored count as duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from typing import Literal, LiteralString, Self, TypeVar

import psycopg
from psycopg import AsyncConnection, errors
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ingest import maintenance
from ingest.errors import StorageDataError, StorageError, StorageUnavailableError, one_line

__all__ = ["BatchWriter", "DeadLetter", "DeviceUpdate", "ReadingSet", "WriteResult"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: (device_key, ts, {metric name: value}): one sample instant of one device.
ReadingSet = tuple[int, datetime, Mapping[str, float]]

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS staging_readings (
    time timestamptz NOT NULL, device_key int4 NOT NULL, metric_key int2 NOT NULL,
    value float8 NOT NULL
) ON COMMIT DELETE ROWS
"""
_COPY_STAGING = (
    "COPY staging_readings (time, device_key, metric_key, value) FROM STDIN (FORMAT BINARY)"
)
_COPY_READINGS = "COPY readings (time, device_key, metric_key, value) FROM STDIN (FORMAT BINARY)"
# Binary COPY rows are built in bulk: per row, one struct.pack call instead of a write_row
# coroutine (a quarter of the CPU). Field count, then (length, value) per column.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, extension length
_COPY_TRAILER = b"\xff\xff"
_COPY_ROW = struct.Struct("!hiqiiihid")  # 4 fields: time int8, device int4, metric int2, float8
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MERGE = """
INSERT INTO readings (time, device_key, metric_key, value)
SELECT time, device_key, metric_key, value FROM staging_readings
ON CONFLICT DO NOTHING
RETURNING device_key, metric_key, time
"""
_STAGING_LATEST = """
CREATE TEMP TABLE IF NOT EXISTS staging_latest (
    device_key int4 NOT NULL, metric_key int2 NOT NULL, time timestamptz NOT NULL,
    value float8 NOT NULL
) ON COMMIT DELETE ROWS
"""
_COPY_LATEST = (
    "COPY staging_latest (device_key, metric_key, time, value) FROM STDIN (FORMAT BINARY)"
)
_LATEST_TYPES = ["int4", "int2", "timestamptz", "float8"]
# Key order is lock order, so flushes of concurrent writers cannot deadlock. A row only moves
# forward in time, so late, duplicate and retried readings leave it alone; a device deleted
# meanwhile gets no row back.
_MERGE_LATEST = """
INSERT INTO latest_readings AS l (device_key, metric_key, time, value)
SELECT device_key, metric_key, time, value FROM staging_latest s
WHERE EXISTS (SELECT 1 FROM devices d WHERE d.device_key = s.device_key)
ORDER BY device_key, metric_key
ON CONFLICT (device_key, metric_key) DO UPDATE
SET time = excluded.time, value = excluded.value
WHERE excluded.time > l.time
"""
_MARK_DIRTY = """
INSERT INTO rollup_dirty (minute) SELECT to_timestamp(m * 60) FROM unnest(%s::int8[]) AS m
"""
# A gap is a jump of the sequence past the last one seen (a lower seq is a redelivery or a
# device restart, not a gap); gaps inside the batch are counted by the caller.
_UPDATE_DEVICES = """
UPDATE devices d
SET last_seen = greatest(d.last_seen, u.last_seen),
    seq_gaps = d.seq_gaps + u.gaps
               + CASE WHEN u.first_seq > d.last_seq + 1 THEN u.first_seq - d.last_seq - 1
                      ELSE 0 END,
    -- Only forward, so a redelivered older batch cannot fake a gap for the next one; a
    -- sequence starting again at 0 or 1 is a device restart.
    last_seq = CASE WHEN u.last_seq IS NULL THEN d.last_seq
                    WHEN d.last_seq IS NULL OR u.last_seq > d.last_seq OR u.first_seq <= 1
                    THEN u.last_seq
                    ELSE d.last_seq END
FROM unnest(%s::int4[], %s::timestamptz[], %s::int8[], %s::int8[], %s::int8[])
     AS u(device_key, last_seen, first_seq, last_seq, gaps)
WHERE d.device_key = u.device_key
"""
_INSERT_DEAD_LETTER = """
INSERT INTO dead_letters (received_at, source, device_id, item_index, reason, detail, payload)
VALUES (%s, %s, %s, %s, %s, %s, %s)
"""
_KNOWN_METRICS = "SELECT name, metric_key FROM metrics WHERE name = ANY(%s)"
_CREATE_METRICS = """
INSERT INTO metrics (name)
SELECT n FROM unnest(%s::text[]) AS n WHERE NOT EXISTS (SELECT 1 FROM metrics WHERE name = n)
ON CONFLICT (name) DO NOTHING
"""

# Failures worth retrying: the server or the network, not the data.
_TRANSIENT: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    errors.TransactionRollback,
    errors.InsufficientResources,
    errors.ReadOnlySqlTransaction,
)
_BACKOFF_FIRST_S = 0.05
_BACKOFF_MAX_S = 2.0

#: {device_key: {metric name: (ts, value)}}: newest committed values not yet in the table.
_Latest = dict[int, dict[str, tuple[datetime, float]]]


@dataclass(frozen=True, slots=True)
class DeviceUpdate:
    """Per-batch bookkeeping of one device: when it was heard, its seq range, gaps within."""

    device_key: int
    last_seen: datetime
    first_seq: int | None = None
    last_seq: int | None = None
    seq_gaps: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message or item that was rejected, kept with its reason and raw payload."""

    source: Literal["mqtt", "http"]
    reason: str
    detail: str
    payload: bytes
    device_id: str | None = None
    item_index: int | None = None
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Rows stored by a batch and rows that were already there.

    ``accepted_per_set`` gives the new rows of each reading-set, in order, when the batch
    held duplicates; it is None when every row was new.
    """

    accepted: int
    duplicates: int
    accepted_per_set: list[int] | None = None


class _DuplicateRowsError(Exception):
    """The direct COPY met a row that is already stored: take the deduplicating path."""


def _copy_data(sets: Sequence[ReadingSet], keys: Mapping[str, int]) -> bytes:
    """Encode the rows of ``sets`` in binary COPY format, header and trailer included."""
    pack, epoch = _COPY_ROW.pack, _PG_EPOCH
    rows = [
        pack(4, 8, micros, 4, device_key, 2, keys[name], 8, value)
        for device_key, ts, values in sets
        for d in (ts - epoch,)
        for micros in ((d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds,)
        for name, value in values.items()
    ]
    return b"".join((_COPY_HEADER, *rows, _COPY_TRAILER))


class _State(Enum):
    UNOPENED = 1
    OPEN = 2
    CLOSED = 3


class BatchWriter:
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
        self.retry_max_s = retry_max_s
        self._conninfo = conninfo
        self.latest_flush_s = latest_flush_s
        self.latest_max_keys = latest_max_keys
        self._state = _State.UNOPENED
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=pool_min,
            max_size=pool_max,
            open=False,
            name="ingest-writer",
            # No check on checkout: it would cost a round trip a batch, and a broken
            # connection fails the write, which is retried on a fresh one.
            configure=self._configure,
            kwargs={"connect_timeout": max(1, round(connect_timeout_s))},
        )
        self._metric_keys: dict[str, int] = {}
        self._metric_lock = asyncio.Lock()
        self._partition_days: set[date] = set()
        self._latest: _Latest = {}
        self._latest_keys = 0
        self._latest_lock = asyncio.Lock()
        self._latest_task: asyncio.Task[None] | None = None
        self._writes = 0  # in flight; close() flushes their latest values after them
        self._no_writes = asyncio.Event()
        self._stats = dict.fromkeys(
            (
                "batches",
                "rows",
                "accepted",
                "duplicates",
                "dead_letters",
                "retries",
                "failures",
                "merges_with_duplicates",
                "latest_flushes",
                "latest_rows",
            ),
            0,
        )

    @staticmethod
    async def _configure(conn: AsyncConnection[TupleRow]) -> None:
        await conn.execute(_STAGING)
        await conn.execute(_STAGING_LATEST)
        await conn.commit()

    async def open(self) -> None:
        """Open the pool; connections are made in the background, so this does not wait."""
        if self._state is not _State.UNOPENED:
            raise RuntimeError(f"cannot open a writer that is {self._state.name.lower()}")
        await self._pool.open(wait=False)
        self._latest_task = asyncio.create_task(
            self._flush_latest_forever(), name="ingest-writer-latest"
        )
        self._state = _State.OPEN

    async def close(self) -> None:
        """Flush the latest values and close the pool; in-flight writes finish first."""
        if self._state is _State.OPEN:
            self._state = _State.CLOSED
            if self._latest_task is not None:
                self._latest_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._latest_task
            if self._writes:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._no_writes.wait(), self.retry_max_s + 5)
            try:
                await self.flush_latest()
            except StorageError as exc:
                # The readings are stored; only their latest value lags until the next one.
                log.warning("latest values of %d keys not stored: %s", self._latest_keys, exc)
            await self._pool.close()
        self._state = _State.CLOSED

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def connection(self, timeout_s: float = 2.0) -> AsyncIterator[AsyncConnection[TupleRow]]:
        """Lend a pooled connection for a read (token lookups, readiness checks)."""
        try:
            async with self._pool.connection(timeout=timeout_s) as conn:
                yield conn
        except PoolTimeout as exc:
            raise StorageUnavailableError(f"no database connection: {one_line(exc)}") from exc

    def get_stats(self) -> dict[str, int]:
        """Counters since start, plus the pool's own."""
        return self._stats | {f"pool_{k}": v for k, v in self._pool.get_stats().items()}

    async def write(
        self,
        sets: Sequence[ReadingSet],
        devices: Sequence[DeviceUpdate] = (),
        dead_letters: Sequence[DeadLetter] = (),
    ) -> WriteResult:
        """Store a batch in one transaction and return how many rows were new."""
        if self._state is not _State.OPEN:
            raise RuntimeError("the writer is not open")
        if self._latest_keys >= self.latest_max_keys:
            # Bounded: the caller waits (or is told to push back) before anything is stored.
            await self.flush_latest()
        rows = sum(len(values) for _, _, values in sets)
        self._writes += 1
        self._no_writes.clear()
        try:
            new_sets = await self._retrying(
                lambda conn: self._write_once(conn, sets, devices, dead_letters)
            )
            # Only stored rows: a duplicate need not carry the value that was stored.
            self._fold_latest(sets if new_sets is None else new_sets)
        finally:
            self._writes -= 1
            if not self._writes:
                self._no_writes.set()
        if new_sets is None:
            accepted, per_set = rows, None
        else:
            per_set = [len(values) for _, _, values in new_sets]
            accepted = sum(per_set)
        self._stats["batches"] += 1
        self._stats["rows"] += rows
        self._stats["accepted"] += accepted
        self._stats["duplicates"] += rows - accepted
        self._stats["dead_letters"] += len(dead_letters)
        return WriteResult(accepted, rows - accepted, per_set)

    async def flush_latest(self) -> None:
        """Store the newest committed value per device and metric in ``latest_readings`` now."""
        async with self._latest_lock:
            pending, self._latest, self._latest_keys = self._latest, {}, 0
            if not pending:
                return
            try:
                stored = await self._retrying(lambda conn: self._flush_latest_once(conn, pending))
            except BaseException:
                # Keep them for the next flush, behind anything newer folded in meanwhile.
                newer = self._latest
                self._latest, self._latest_keys = {}, 0
                self._fold_latest_values(pending)
                self._fold_latest_values(newer)
                raise
            self._stats["latest_flushes"] += 1
            self._stats["latest_rows"] += stored

    async def _flush_latest_forever(self) -> None:
        while True:
            await asyncio.sleep(self.latest_flush_s)
            try:
                await self.flush_latest()
            except StorageError as exc:
                log.warning("latest values not stored, retrying with the next flush: %s", exc)
            except Exception:  # the flusher must outlive one failed flush
                log.exception("latest values not stored, retrying with the next flush")

    async def _flush_latest_once(self, conn: AsyncConnection[TupleRow], pending: _Latest) -> int:
        keys = self._metric_keys
        async with conn.transaction():
            async with conn.cursor().copy(_COPY_LATEST) as copy:
                copy.set_types(_LATEST_TYPES)
                for device_key, values in pending.items():
                    for name, (ts, value) in values.items():
                        await copy.write_row((device_key, keys[name], ts, value))
            cur = await conn.execute(_MERGE_LATEST)
            return cur.rowcount

    def _fold_latest(self, sets: Sequence[ReadingSet]) -> None:
        """Keep the newest value per device and metric of committed ``sets`` for the flush.

        A row of ``latest_readings`` only moves to a strictly newer time, so late readings
        and the flushes of other writers cannot move it back.
        """
        latest = self._latest
        for device_key, ts, values in sets:
            known = latest.get(device_key)
            if known is None:
                latest[device_key] = {name: (ts, value) for name, value in values.items()}
                self._latest_keys += len(values)
                continue
            for name, value in values.items():
                seen = known.get(name)
                # Strictly newer: of equal times the first one wins, as it does in readings.
                if seen is None or ts > seen[0]:
                    if seen is None:
                        self._latest_keys += 1
                    known[name] = (ts, value)

    def _fold_latest_values(self, pending: _Latest) -> None:
        self._fold_latest(
            [
                (device_key, ts, {name: value})
                for device_key, values in pending.items()
                for name, (ts, value) in values.items()
            ]
        )

    async def write_dead_letters(self, dead_letters: Sequence[DeadLetter]) -> None:
        """Store dead letters alone (for messages that carried no valid reading)."""
        await self.write((), (), dead_letters)

    @contextlib.asynccontextmanager
    async def _connection(self, deadline: float) -> AsyncIterator[AsyncConnection[TupleRow]]:
        """Lend a pooled connection, or a direct one while the pool is still backing off.

        After an outage the pool retries its connections with a delay that doubles each
        time, so it can lag the database's return by as long as the outage lasted; a
        direct connection lets writes resume as soon as the database answers.
        """
        try:
            conn = await self._pool.getconn(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
        except PoolTimeout:
            direct = await AsyncConnection.connect(self._conninfo, connect_timeout=2)
            try:
                await self._configure(direct)
                yield direct
            finally:
                await direct.close()
            return
        try:
            yield conn
        finally:
            await self._pool.putconn(conn)

    async def _retrying(self, op: Callable[[AsyncConnection[TupleRow]], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self.retry_max_s
        delay = _BACKOFF_FIRST_S
        while True:
            try:
                async with self._connection(deadline) as conn:
                    return await op(conn)
            except _TRANSIENT as exc:
                if time.monotonic() + delay > deadline:
                    self._stats["failures"] += 1
                    raise StorageUnavailableError(
                        f"database unavailable after retrying for {self.retry_max_s:.0f} s: "
                        f"{one_line(exc)}"
                    ) from exc
                self._stats["retries"] += 1
                log.warning("database write failed, retrying in %.2f s: %s", delay, one_line(exc))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311  (jitter)
                delay = min(delay * 2, _BACKOFF_MAX_S)
            except errors.CheckViolation as exc:
                # A row for a partition retention has just dropped: forget what we knew.
                if self._partition_days and "no partition" in str(exc):
                    self._partition_days.clear()
                    continue
                self._stats["failures"] += 1
                raise StorageDataError(f"database rejected the batch: {one_line(exc)}") from exc
            except psycopg.Error as exc:
                self._stats["failures"] += 1
                raise StorageDataError(f"database rejected the batch: {one_line(exc)}") from exc

    async def _write_once(
        self,
        conn: AsyncConnection[TupleRow],
        sets: Sequence[ReadingSet],
        devices: Sequence[DeviceUpdate],
        dead_letters: Sequence[DeadLetter],
    ) -> list[ReadingSet] | None:
        """Store the batch: None if every row was new, else the new rows of each set.

        Almost every batch has no duplicate, and COPY straight into readings runs at about
        twice the rate of INSERT ... ON CONFLICT, so that is tried first. A unique violation
        rolls the transaction back; the batch then goes through the staging table and one
        INSERT ... SELECT ... ON CONFLICT DO NOTHING, which skips the duplicates and returns
        the keys it stored, so each set (each caller) learns its own count.
        """
        keys: dict[str, int] = {}
        if sets:
            keys = await self._resolve_metrics(conn, sets)
            if self.mode == "plain":
                await self._cover_partitions(conn, sets)
        data = _copy_data(sets, keys)
        try:
            return await self._commit(
                conn, sets, data=data, keys=keys, devices=devices, dead_letters=dead_letters
            )
        except _DuplicateRowsError:
            self._stats["merges_with_duplicates"] += 1
        return await self._commit(
            conn,
            sets,
            data=data,
            keys=keys,
            devices=devices,
            dead_letters=dead_letters,
            direct=False,
        )

    async def _commit(
        self,
        conn: AsyncConnection[TupleRow],
        sets: Sequence[ReadingSet],
        *,
        data: bytes,
        keys: dict[str, int],
        devices: Sequence[DeviceUpdate],
        dead_letters: Sequence[DeadLetter],
        direct: bool = True,
    ) -> list[ReadingSet] | None:
        """One transaction: the rows (``direct``: straight into readings), the rest after."""
        new_sets = None
        async with conn.transaction():
            cur = conn.cursor()
            if sets and direct:
                try:
                    await self._copy(conn, _COPY_READINGS, data)
                except errors.UniqueViolation as exc:
                    raise _DuplicateRowsError from exc
            elif sets:
                await self._copy(conn, _COPY_STAGING, data)
                new_sets = await self._merge(conn, sets, keys)
            if sets and self.mode == "plain":
                minutes = {int(ts.timestamp()) // 60 for _, ts, _ in sets}
                await cur.execute(_MARK_DIRTY, [sorted(minutes)])
            if devices:
                ordered = sorted(devices, key=lambda d: d.device_key)  # lock order: no deadlocks
                await cur.execute(
                    _UPDATE_DEVICES,
                    [
                        [d.device_key for d in ordered],
                        [d.last_seen for d in ordered],
                        [d.first_seq for d in ordered],
                        [d.last_seq for d in ordered],
                        [d.seq_gaps for d in ordered],
                    ],
                )
            if dead_letters:
                now = datetime.now(UTC)
                await cur.executemany(
                    _INSERT_DEAD_LETTER,
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
        return new_sets

    @staticmethod
    async def _merge(
        conn: AsyncConnection[TupleRow], sets: Sequence[ReadingSet], keys: dict[str, int]
    ) -> list[ReadingSet]:
        """Move the staged rows into readings, skipping duplicates; return the new rows."""
        cur = await conn.execute(_MERGE)
        stored = set(await cur.fetchall())
        new_sets: list[ReadingSet] = []
        for device_key, ts, values in sets:
            new = {}
            for name, value in values.items():
                key = (device_key, keys[name], ts)
                if key in stored:
                    stored.discard(key)  # a key twice in one batch counts once
                    new[name] = value
            new_sets.append((device_key, ts, new))
        return new_sets

    @staticmethod
    async def _copy(conn: AsyncConnection[TupleRow], statement: LiteralString, data: bytes) -> None:
        async with conn.cursor().copy(statement) as copy:
            await copy.write(data)

    async def _resolve_metrics(
        self, conn: AsyncConnection[TupleRow], sets: Sequence[ReadingSet]
    ) -> dict[str, int]:
        keys = self._metric_keys
        missing = {name for _, _, values in sets for name in values if name not in keys}
        if missing:
            async with self._metric_lock, conn.transaction():
                # Another worker may create the same names now; ON CONFLICT makes that safe
                # and the SELECT then returns whichever key won.
                await conn.execute(_CREATE_METRICS, [sorted(missing)])
                cur = await conn.execute(_KNOWN_METRICS, [sorted(missing)])
                keys.update(dict(await cur.fetchall()))
        return keys

    async def _cover_partitions(
        self, conn: AsyncConnection[TupleRow], sets: Sequence[ReadingSet]
    ) -> None:
        stamps = [ts for _, ts, _ in sets]
        first, last = min(stamps).astimezone(UTC).date(), max(stamps).astimezone(UTC).date()
        known = self._partition_days
        if first in known and last in known and (last - first).days <= 1:
            return
        days = {ts.astimezone(UTC).date() for ts in stamps} - known
        if days:
            await maintenance.create_day_partitions(conn, days)
            known.update(days)
