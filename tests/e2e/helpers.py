"""Helpers for end-to-end tests: devices, HTTP posts, polling the database."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import psycopg

from core.registry import create_device

T = TypeVar("T")

NOW = datetime.now(UTC).replace(microsecond=0)


async def new_device(db_url: str, device_id: str) -> str:
    """Register a device; return its token."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        return (await create_device(conn, device_id)).token


def readings(count: int, start: datetime | None = None, seq0: int = 0) -> list[dict[str, Any]]:
    """``count`` wire-v1 reading-sets a second apart, two metrics each; seq n at second n."""
    base = start or NOW - timedelta(hours=1)
    return [
        {
            "ts": (base + timedelta(seconds=seq0 + i)).isoformat(),
            "seq": seq0 + i,
            "values": {"temperature": 20 + i / 100, "humidity": 40.0},
        }
        for i in range(count)
    ]


async def post(
    url: str,
    token: str,
    body: object,
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST /v1/telemetry; return status, JSON body and headers."""
    data = raw if raw is not None else json.dumps(body).encode()
    hdrs = {"Authorization": f"Bearer {token}", "Content-Type": content_type} | (headers or {})
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/telemetry", data=data, headers=hdrs) as resp,
    ):
        return resp.status, await resp.json(content_type=None), dict(resp.headers)


def query(db_url: str, sql: str, params: Sequence[object] | None = None) -> list[tuple[Any, ...]]:
    """Run a query on a fresh connection."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        return list(conn.execute(sql.encode(), params).fetchall())


async def wait_for(
    predicate: Callable[[], bool], timeout_s: float = 20, what: str = "condition"
) -> None:
    """Poll ``predicate`` until true or fail with ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def wait_until(
    observe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    timeout_s: float = 20,
    what: str = "condition",
) -> T:
    """Poll ``observe`` until ``accept`` takes what it saw; return that, or fail with ``what``."""
    deadline = time.monotonic() + timeout_s
    seen: T | None = None
    while time.monotonic() < deadline:
        seen = await observe()
        if accept(seen):
            return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last seen: {seen!r})")


def count_readings(db_url: str) -> int:
    """Rows in readings."""
    return int(query(db_url, "SELECT count(*) FROM readings")[0][0])


def reasons(db_url: str) -> list[str]:
    """Reason codes of the dead letters, oldest first."""
    return [r[0] for r in query(db_url, "SELECT reason FROM dead_letters ORDER BY id")]
