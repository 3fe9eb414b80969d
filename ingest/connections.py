"""The ingest's database connections: one pool, lent for reads, retried for writes.

:meth:`Connections.connection` lends a pooled connection for a short read (token and device
lookups, readiness) and translates what psycopg raises inside it into the ingest's own
errors. :meth:`Connections.retrying` runs a write, retrying transient failures (connection
lost, server restarting, deadlock) with capped, jittered backoff for ``retry_max_s``; after
that :class:`~ingest.errors.StorageUnavailableError` tells the caller to push back.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import psycopg
from psycopg import AsyncConnection, errors
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from core.backoff import Backoff
from core.errors import one_line
from core.lifecycle import AsyncResource
from ingest.errors import StorageDataError, StorageUnavailableError
from ingest.metrics import METRICS

__all__ = ["Configure", "Connections"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Configure = Callable[[AsyncConnection[TupleRow]], Awaitable[None]]

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


def _never(_exc: psycopg.Error) -> bool:
    return False


class Connections(AsyncResource):
    """A connection pool whose connections are set up by ``configure``."""

    def __init__(
        self,
        conninfo: str,
        *,
        configure: Configure,
        pool_min: int = 2,
        pool_max: int = 8,
        retry_max_s: float = 10.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.retry_max_s = retry_max_s
        self._conninfo = conninfo
        self._configure = configure
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=pool_min,
            max_size=pool_max,
            open=False,
            name="ingest-writer",
            # No check on checkout: it would cost a round trip a batch, and a broken
            # connection fails the write, which is retried on a fresh one.
            configure=configure,
            kwargs={"connect_timeout": max(1, round(connect_timeout_s))},
        )

    async def _open(self) -> None:
        # Connections are made in the background, so this does not wait for the database.
        await self._pool.open(wait=False)

    async def _close(self) -> None:
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def connection(self, timeout_s: float = 2.0) -> AsyncIterator[AsyncConnection[TupleRow]]:
        """Lend a pooled connection for a read; psycopg's errors come out as the ingest's."""
        try:
            async with self._pool.connection(timeout=timeout_s) as conn:
                yield conn
        except PoolTimeout as exc:
            raise StorageUnavailableError(f"no database connection: {one_line(exc)}") from exc
        except _TRANSIENT as exc:
            raise StorageUnavailableError(f"database unavailable: {one_line(exc)}") from exc
        except psycopg.Error as exc:
            raise StorageDataError(f"database refused the request: {one_line(exc)}") from exc

    async def retrying(
        self,
        op: Callable[[AsyncConnection[TupleRow]], Awaitable[T]],
        *,
        again_at_once: Callable[[psycopg.Error], bool] = _never,
    ) -> T:
        """Run ``op`` on a connection until it succeeds or transient failures outlast the limit.

        ``again_at_once`` names other errors after which ``op`` runs again without waiting
        (the caller has repaired their cause); any other error is final.
        """
        self._require_open()
        deadline = time.monotonic() + self.retry_max_s
        backoff = Backoff(_BACKOFF_FIRST_S, _BACKOFF_MAX_S)
        while True:
            try:
                async with self._lend(deadline) as conn:
                    return await op(conn)
            except _TRANSIENT as exc:
                if time.monotonic() + backoff.peek_s() > deadline:
                    raise StorageUnavailableError(
                        f"database unavailable after retrying for {self.retry_max_s:.0f} s: "
                        f"{one_line(exc)}"
                    ) from exc
                METRICS.db_retries.inc()
                log.warning(
                    "database write failed, retrying within %.2f s: %s",
                    backoff.peek_s(),
                    one_line(exc),
                )
                await backoff.sleep()
            except psycopg.Error as exc:
                if again_at_once(exc):
                    continue
                raise StorageDataError(f"database rejected the batch: {one_line(exc)}") from exc

    @contextlib.asynccontextmanager
    async def _lend(self, deadline: float) -> AsyncIterator[AsyncConnection[TupleRow]]:
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
