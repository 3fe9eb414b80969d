"""The fleet-wide /v1/latest read in slices on several connections sharing one snapshot."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from api import create_app, latest_page
from api.context import DATABASE
from core.settings import DatabaseSettings
from tests.api.conftest import ADMIN, ClientFactory, api_settings
from tests.ingest.helpers import T0, open_writer

DEVICES = [f"d{i:02}" for i in range(24)]
SLICE = 4


async def _fleet(db_url: str, storage_mode: str) -> None:
    """24 devices; every fifth never reports, the others report two or three metrics."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cur = await conn.execute(
            "INSERT INTO devices (device_id) SELECT unnest(%s::text[]) RETURNING device_key",
            [DEVICES],
        )
        keys = [int(row[0]) for row in await cur.fetchall()]
    async with open_writer(db_url, storage_mode) as writer:
        for i, key in enumerate(keys):
            if i % 5 == 4:
                continue
            values = {"temperature": i / 7, "humidity": 50.0 - i}
            if i % 2:
                values["voltage"] = 3.3
            await writer.write([(key, T0 + timedelta(seconds=i, microseconds=i), values)])
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE devices d SET last_seen = (SELECT max(time) FROM readings r"
            " WHERE r.device_key = d.device_key)"
        )


async def _walk(client: TestClient, query: str) -> list[bytes]:  # type: ignore[type-arg]
    """Every page's body, following the cursor."""
    bodies, cursor = [], None
    while True:
        r = await client.get(query + (f"&cursor={cursor}" if cursor else ""), headers=ADMIN)
        assert r.status == 200, await r.text()
        bodies.append(await r.read())
        cursor = (await r.json())["next_cursor"]
        if cursor is None:
            return bodies


@pytest.fixture
async def pooled(db_url: str, aiohttp_client: ClientFactory) -> TestClient:  # type: ignore[type-arg]
    """A client whose API keeps four connections open, so that slices find spares."""
    app = create_app(api_settings(), DatabaseSettings(database_url=db_url, db_pool_min=4))
    client = await aiohttp_client(app)
    await app[DATABASE].pool.wait()
    return client


@pytest.fixture
def readers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The backend pid of the connection that read each slice, in the order they started."""
    pids: list[int] = []
    read_slice = latest_page._read_slice

    async def recorded(conn: Any, part: Any, params: Any) -> latest_page.Page:
        pids.append(conn.info.backend_pid)
        return await read_slice(conn, part, params)

    monkeypatch.setattr(latest_page, "_read_slice", recorded)
    return pids


@pytest.mark.parametrize(
    "query",
    ["/v1/latest?limit=1", "/v1/latest?limit=4", "/v1/latest?limit=5", "/v1/latest?limit=8",
     "/v1/latest?limit=9", "/v1/latest?limit=24", "/v1/latest?limit=100",
     "/v1/latest?limit=7&metric=voltage,humidity"],
)  # fmt: skip
async def test_sliced_pages_are_those_of_one_query(
    pooled: TestClient,  # type: ignore[type-arg]
    *,
    db_url: str,
    storage_mode: str,
    readers: list[int],
    monkeypatch: pytest.MonkeyPatch,
    query: str,
) -> None:
    await _fleet(db_url, storage_mode)
    whole = await _walk(pooled, query)
    pages = len(readers)
    monkeypatch.setattr(latest_page, "SLICE_DEVICES", SLICE)
    assert await _walk(pooled, query) == whole
    limit = int(query.split("limit=")[1].split("&", maxsplit=1)[0])
    sizes = [min(limit, len(DEVICES) - i) for i in range(0, len(DEVICES), limit)]
    assert len(readers) - pages == sum(-(-size // SLICE) for size in sizes)


async def test_without_spare_connections_the_slices_run_in_turn(
    db_url: str,
    storage_mode: str,
    aiohttp_client: ClientFactory,
    readers: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = DatabaseSettings(database_url=db_url, db_pool_min=1, db_pool_max=1)
    client = await aiohttp_client(create_app(api_settings(), settings))
    await _fleet(db_url, storage_mode)
    whole = await _walk(client, "/v1/latest?limit=10")
    monkeypatch.setattr(latest_page, "SLICE_DEVICES", SLICE)
    assert await _walk(client, "/v1/latest?limit=10") == whole
    assert len(readers) == 3 + 7  # pages of 10, 10 and 4 devices: 3 + 3 + 1 slices
    assert len(set(readers)) == 1


async def test_slices_read_one_snapshot(
    pooled: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
    readers: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fleet changed while the first slice is read does not show in the others."""
    await _fleet(db_url, storage_mode)
    monkeypatch.setattr(latest_page, "SLICE_DEVICES", SLICE)
    read_slice = latest_page._read_slice
    spare_reading, changed = asyncio.Event(), asyncio.Event()

    async def change_meanwhile(conn: Any, part: Any, params: Any) -> latest_page.Page:
        # The page's own connection takes the first slice, so another slice started means a
        # spare connection took it: change the fleet then, and only then let it read.
        if part.after == "":
            await asyncio.wait_for(spare_reading.wait(), 10)
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as other:
                await other.execute("INSERT INTO devices (device_id) VALUES ('d05a'), ('d09a')")
                await other.execute("UPDATE devices SET last_seen = NULL")
            changed.set()
        else:
            spare_reading.set()
            await changed.wait()
        return await read_slice(conn, part, params)

    monkeypatch.setattr(latest_page, "_read_slice", change_meanwhile)
    page = (await (await pooled.get("/v1/latest?limit=12", headers=ADMIN)).json())["devices"]
    assert len(set(readers)) > 1
    assert [d["device_id"] for d in page] == DEVICES[:12]
    assert [len(d["values"]) for d in page] == [2, 3, 2, 3, 0, 3, 2, 3, 2, 0, 2, 3]


async def test_a_slice_that_fails_fails_the_page_and_returns_its_connections(
    pooled: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await _fleet(db_url, storage_mode)
    monkeypatch.setattr(latest_page, "SLICE_DEVICES", SLICE)
    read_slice = latest_page._read_slice

    async def second_times_out(conn: Any, part: Any, params: Any) -> latest_page.Page:
        if part.after == DEVICES[SLICE - 1]:
            await conn.execute("SET LOCAL statement_timeout = '50ms'")
            await conn.execute("SELECT pg_sleep(5)")
        return await read_slice(conn, part, params)

    monkeypatch.setattr(latest_page, "_read_slice", second_times_out)
    r = await pooled.get("/v1/latest?limit=12", headers=ADMIN)
    assert r.status == 503
    assert (await r.json())["error"] == "unavailable"
    monkeypatch.setattr(latest_page, "_read_slice", read_slice)
    r = await pooled.get("/v1/latest?limit=12", headers=ADMIN)
    assert r.status == 200
    stats = pooled.app[DATABASE].pool.get_stats()
    assert stats.get("returns_bad", 0) == stats.get("connections_lost", 0) == 0
    assert not [rec for rec in caplog.records if rec.name.startswith("psycopg")]
