"""Helpers of the query API tests: loading readings and refreshing rollups on each path."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
from aiohttp import web

from ingest import maintenance
from ingest.records import ReadingSet
from tests.ingest.helpers import add_device, open_writer


async def load(url: str, storage_mode: str, device_id: str, sets: list[ReadingSet]) -> int:
    """Register ``device_id`` (no token) and store ``sets`` for it through the writer."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        key = await add_device(conn, device_id)
    async with open_writer(url, storage_mode) as writer:
        await writer.write([(key, ts, values) for _, ts, values in sets])
    return key


async def refresh_rollups(url: str, storage_mode: str, now: datetime | None = None) -> None:
    """Bring the rollups up to date: the plain-path job, or a full cagg refresh."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if storage_mode == "plain":
            await maintenance.refresh_rollups(conn, now or datetime.now(UTC) + timedelta(days=1))
        else:
            for view in ("readings_1m", "readings_1h", "readings_1d"):
                await conn.execute(
                    "CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL)", [view]
                )


@contextmanager
def serve_in_thread(app: web.Application) -> Iterator[str]:
    """Serve ``app`` on a free loopback port from a thread of its own; yield its base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    started = threading.Event()
    port: list[int] = []

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port.append(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    started.wait()
    try:
        yield f"http://127.0.0.1:{port[0]}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
