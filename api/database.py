"""The connection pool of the query API and what it knows about the storage path.

:class:`Database` is opened once (``async with``) by the application's ``cleanup_ctx`` and
closed on the way down; borrowing from it before or after that is a
:class:`~core.errors.StateError`. What psycopg raises while a connection is lent comes out
as :class:`~api.errors.DatabaseUnavailableError` where the database cannot serve.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Literal

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from api import queries
from api.errors import DatabaseUnavailableError
from core.errors import one_line
from core.lifecycle import AsyncResource

__all__ = ["Database", "StorageMode"]

_EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
# How long to queue for a connection that looked idle but was taken meanwhile.
_NO_WAIT_S = 0.05

StorageMode = Literal["plain", "timescale"]


class Database(AsyncResource):
    """A connection pool whose connections speak UTC and time out long statements."""

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 2,
        max_size: int = 8,
        statement_timeout_s: float = 30.0,
        checkout_timeout_s: float = 5.0,
    ) -> None:
        self._statement_timeout_ms = round(statement_timeout_s * 1000)
        self._checkout_timeout_s = checkout_timeout_s
        self.pool = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            open=False,
            name="api",
            configure=self._configure,
            check=AsyncConnectionPool.check_connection,
            kwargs={"connect_timeout": 5, "autocommit": True},
        )
        self._mode: StorageMode | None = None

    async def _configure(self, conn: AsyncConnection[TupleRow]) -> None:
        await conn.execute(queries.SET_TIMEZONE_UTC)
        await conn.execute(queries.SET_STATEMENT_TIMEOUT, [str(self._statement_timeout_ms)])
        await conn.execute(queries.SET_CUSTOM_PLANS)

    async def _open(self) -> None:
        # Connections are made in the background, so this does not wait for the database.
        await self.pool.open(wait=False)

    async def _close(self) -> None:
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[TupleRow]]:
        """Lend an autocommit connection; DatabaseUnavailableError when none can be had."""
        self._require_open()
        try:
            async with self.pool.connection(timeout=self._checkout_timeout_s) as conn:
                yield conn
        except PoolTimeout as exc:
            raise DatabaseUnavailableError(f"no database connection: {one_line(exc)}") from exc
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailableError(f"database unavailable: {one_line(exc)}") from exc

    @contextlib.asynccontextmanager
    async def spare_connection(self) -> AsyncIterator[AsyncConnection[TupleRow] | None]:
        """Lend a connection the pool has idle now, or None rather than wait for one."""
        self._require_open()
        conn = None
        if self.pool.get_stats().get("pool_available", 0):
            with contextlib.suppress(PoolTimeout, PoolClosed):
                conn = await self.pool.getconn(timeout=_NO_WAIT_S)
        if conn is None:
            yield None
            return
        try:
            yield conn
        finally:
            await self.pool.putconn(conn)

    async def storage_mode(self, conn: AsyncConnection[TupleRow]) -> StorageMode:
        """Return the storage path recorded by ``migrate`` (read once, then remembered)."""
        if self._mode is None:
            row = await (await conn.execute(queries.STORAGE_MODE)).fetchone()
            self._mode = "timescale" if row is not None and row[0] == "timescale" else "plain"
        return self._mode

    async def rollups_complete_before(self, conn: AsyncConnection[TupleRow]) -> datetime | None:
        """Return when plain-path rollups stop being complete; None where they always are.

        TimescaleDB's continuous aggregates aggregate their unmaterialized tail in real
        time, so they are complete everywhere.
        """
        if await self.storage_mode(conn) == "timescale":
            return None
        row = await (await conn.execute(queries.ROLLUP_WATERMARK)).fetchone()
        return row[0] if row is not None else _EARLIEST
