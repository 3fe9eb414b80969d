"""The newest value per device and metric, folded in memory and upserted once a second.

``latest_readings`` is derived data; a value keeps its type (number, boolean or string),
each in its own column. Committed batches are folded here
(:meth:`LatestValues.fold`), and a background task upserts the fold every ``flush_s``,
which costs one row per key a second instead of one per key a batch. A row only moves to a
strictly newer time, so late readings and the flushes of other writers cannot move it back.
The fold is bounded (``max_keys``): when it is full, the next write flushes it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from core.lifecycle import AsyncResource
from ingest import statements
from ingest.connections import Connections
from ingest.copy_rows import encode_latest
from ingest.errors import StorageError
from ingest.metric_keys import MetricKeys
from ingest.metrics import METRICS

__all__ = ["LatestValues"]

log = logging.getLogger(__name__)

_Value = float | bool | str
#: {device_key: {metric name: (ts, value)}}: newest committed values not yet in the table.
_Fold = dict[int, dict[str, tuple[datetime, _Value]]]


class LatestValues(AsyncResource):
    """Folds committed reading-sets and keeps ``latest_readings`` at most ``flush_s`` behind."""

    def __init__(
        self,
        connections: Connections,
        metric_keys: MetricKeys,
        *,
        flush_s: float = 1.0,
        max_keys: int = 200_000,
    ) -> None:
        self.flush_s = flush_s
        self.max_keys = max_keys
        self._connections = connections
        self._metric_keys = metric_keys
        self._fold: _Fold = {}
        self._keys = 0
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None

    @property
    def full(self) -> bool:
        """Whether the fold holds ``max_keys`` keys: flush before folding more."""
        return self._keys >= self.max_keys

    async def _open(self) -> None:
        self._flusher = asyncio.create_task(self._flush_forever(), name="ingest-latest-flusher")

    async def _close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        try:
            await self._flush()
        except StorageError as exc:
            # The readings are stored; only their latest value lags until the next one.
            log.warning("latest values of %d keys not stored: %s", self._keys, exc)

    async def flush(self) -> None:
        """Store the folded values in ``latest_readings`` now."""
        self._require_open()
        await self._flush()

    def fold(self, sets: Sequence[tuple[int, datetime, Mapping[str, _Value]]]) -> None:
        """Keep the newest value per device and metric of committed ``sets``."""
        fold = self._fold
        for device_key, ts, values in sets:
            known = fold.get(device_key)
            if known is None:
                fold[device_key] = {name: (ts, value) for name, value in values.items()}
                self._keys += len(values)
                continue
            for name, value in values.items():
                seen = known.get(name)
                # Strictly newer: of equal times the first one wins, as it does in readings.
                if seen is None or ts > seen[0]:
                    if seen is None:
                        self._keys += 1
                    known[name] = (ts, value)

    async def _flush(self) -> None:
        async with self._lock:
            pending, self._fold, self._keys = self._fold, {}, 0
            if not pending:
                return
            try:
                stored = await self._connections.retrying(lambda conn: self._upsert(conn, pending))
            except BaseException:
                # Keep them for the next flush, behind anything newer folded in meanwhile.
                newer = self._fold
                self._fold, self._keys = {}, 0
                self._refold(pending)
                self._refold(newer)
                raise
        METRICS.latest_rows.inc(stored)

    def _refold(self, fold: _Fold) -> None:
        self.fold(
            [
                (device_key, ts, {name: value})
                for device_key, values in fold.items()
                for name, (ts, value) in values.items()
            ]
        )

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self._flush()
            except StorageError as exc:
                log.warning("latest values not stored, retrying with the next flush: %s", exc)
            except Exception:  # the flusher must outlive one failed flush
                log.exception("latest values not stored, retrying with the next flush")

    async def _upsert(self, conn: AsyncConnection[TupleRow], pending: _Fold) -> int:
        keys = self._metric_keys.known
        data = encode_latest(
            (device_key, keys[name], ts, value)
            for device_key, values in pending.items()
            for name, (ts, value) in values.items()
        )
        async with conn.transaction():
            async with conn.cursor().copy(statements.COPY_LATEST) as copy:
                await copy.write(data)
            cur = await conn.execute(statements.MERGE_LATEST)
            return cur.rowcount
