"""API keys: scopes, the bootstrap key, create-key, rate limits."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from api import ApiSettings, create_app, hash_key
from api.cli import main
from core.settings import DatabaseSettings
from tests.api.conftest import ADMIN, ClientFactory, api_settings


async def _create_key(db_url: str, scope: str, capsys: pytest.CaptureFixture[str]) -> str:
    # The command line runs its own event loop: give it a thread.
    code = await asyncio.to_thread(main, ["create-key", "--scope", scope, "--database-url", db_url])
    assert code == 0
    return capsys.readouterr().out.split()[-1]


async def test_no_key_is_401_and_wrong_scope_is_403(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    r = await client.get("/v1/devices")
    assert r.status == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert (await r.json())["error"] == "unauthorized"
    r = await client.get("/v1/devices", headers={"Authorization": "Bearer ak_nope"})
    assert r.status == 401
    read = {"Authorization": f"Bearer {await _create_key(db_url, 'read', capsys)}"}
    assert (await client.get("/v1/devices", headers=read)).status == 200
    r = await client.post("/v1/devices", json={"device_id": "x"}, headers=read)
    assert r.status == 403
    assert (await r.json())["error"] == "forbidden"
    assert (await client.get("/v1/rejects", headers=read)).status == 403
    admin = {"Authorization": f"Bearer {await _create_key(db_url, 'admin', capsys)}"}
    assert (await client.post("/v1/devices", json={"device_id": "x"}, headers=admin)).status == 201
    assert (await client.get("/v1/rejects", headers=ADMIN)).status == 200


async def test_keys_are_stored_hashed(
    db_url: str, storage_mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = await _create_key(db_url, "read", capsys)
    assert key.startswith("ak_")
    assert len(key) == 46
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        rows = await (await conn.execute("SELECT key_hash, scope FROM api_keys")).fetchall()
    assert rows == [(hash_key(key), "read")]


async def test_revoked_key_is_refused(
    db_url: str,
    storage_mode: str,
    aiohttp_client: ClientFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = await _create_key(db_url, "read", capsys)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("UPDATE api_keys SET revoked_at = now()")
    app = create_app(api_settings(), DatabaseSettings(database_url=db_url, db_pool_min=1))
    client = await aiohttp_client(app)
    assert (await client.get("/v1/fleet", headers={"Authorization": f"Bearer {key}"})).status == 401


async def test_rate_limit_is_429_with_retry_after(
    db_url: str, storage_mode: str, aiohttp_client: ClientFactory
) -> None:
    settings = api_settings(api_rate_per_key=0.5, api_burst_per_key=3)
    client = await aiohttp_client(
        create_app(settings, DatabaseSettings(database_url=db_url, db_pool_min=1))
    )
    statuses = [(await client.get("/v1/fleet", headers=ADMIN)).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    r = await client.get("/v1/fleet", headers=ADMIN)
    assert r.status == 429
    assert int(r.headers["Retry-After"]) >= 1
    # Unauthenticated endpoints are not limited.
    assert (await client.get("/healthz")).status == 200


async def test_without_bootstrap_key_only_stored_keys_work(
    db_url: str, storage_mode: str, aiohttp_client: ClientFactory
) -> None:
    app = create_app(ApiSettings(), DatabaseSettings(database_url=db_url, db_pool_min=1))
    client = await aiohttp_client(app)
    assert (await client.get("/v1/fleet", headers=ADMIN)).status == 401


def test_create_key_without_database_is_one_line_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["create-key", "--scope", "read", "--database-url", "postgresql://nobody@127.0.0.1:1/x"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: cannot connect to the database")
    assert err.count("\n") == 1


def test_invalid_setting_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--api-port", "99999"]) == 1
    err = capsys.readouterr().err
    assert "API_PORT" in err
    assert err.count("\n") == 1
