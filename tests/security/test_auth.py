"""Who may do what: device identity, key scopes, secrets at rest, rate limits.

The MQTT ACL (a device may publish only on ``telemetry/{its id}/#``) belongs with the
broker provisioning and is tested there; here the ingest's own check applies: a payload
naming another device than its topic is refused as ``device_mismatch``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from api.auth import KeyStore, Principal, create_key, hash_key
from api.database import Database
from core.ratelimit import TokenBuckets
from core.registry import DeviceRef, device_by_token, hash_token
from tests.e2e.helpers import wait_for
from tests.security.servers import intake_config, register, request, serve_api, serve_intake
from tests.support.mqtt import TestClient
from tests.support.processes import ServiceProcess

ADMIN_KEY = "ak_security-admin-key-0123456789abcdefghijklmnopq"


def rows(db_url: str, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return list(conn.execute(query.encode(), params).fetchall())


def readings_of(db_url: str, device_id: str) -> int:
    return int(
        rows(
            db_url,
            "SELECT count(*) FROM readings JOIN devices USING (device_key) WHERE device_id = %s",
            [device_id],
        )[0][0]
    )


def new_key(db_url: str, scope: str) -> str:
    async def run() -> str:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            return await create_key(conn, scope)  # type: ignore[arg-type]

    return asyncio.run(run())


def post(url: str, token: str, body: object) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return request(url, "POST", "/v1/telemetry", json.dumps(body).encode(), headers)


# --- a device cannot write as another -------------------------------------------------


def test_http_token_of_a_cannot_write_for_b(plain_db_url: str) -> None:
    token_a = register(plain_db_url, "sec-a")
    register(plain_db_url, "sec-b")
    with serve_intake(intake_config(plain_db_url)) as url:
        status, answer = post(
            url,
            token_a,
            [
                {"device_id": "sec-b", "values": {"t": 1}},
                {"device_id": "sec-a", "values": {"t": 2}},
                {"values": {"u": 3}, "seq": 1},
            ],
        )
    assert status == 200
    assert answer["accepted"] == 2
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [(0, "device_mismatch")]
    assert readings_of(plain_db_url, "sec-b") == 0
    assert readings_of(plain_db_url, "sec-a") == 2
    assert rows(plain_db_url, "SELECT device_id, reason FROM dead_letters") == [
        ("sec-a", "device_mismatch")
    ]


def test_mqtt_payload_naming_another_device_is_a_mismatch(
    plain_db_url: str, mqtt_url: str, tmp_path: Path
) -> None:
    register(plain_db_url, "sec-a")
    register(plain_db_url, "sec-b")
    env = {
        "DATABASE_URL": plain_db_url,
        "MQTT_URL": mqtt_url,
        "MQTT_SHARE_GROUP": "sec-mismatch",
        "MQTT_CLIENT_ID": "ingest-sec-mismatch",
    }
    with (
        ServiceProcess("ingest", env, tmp_path / "ingest.log") as ingest,
        TestClient(mqtt_url) as device,
    ):
        wait_for_subscription(ingest)
        device.publish(
            "telemetry/sec-a", json.dumps({"device_id": "sec-b", "values": {"t": 1}}).encode()
        )
        device.publish("telemetry/sec-a", json.dumps({"values": {"t": 2}}).encode())
        wait_until(lambda: readings_of(plain_db_url, "sec-a") == 1, "the good message")
    assert readings_of(plain_db_url, "sec-b") == 0
    assert rows(plain_db_url, "SELECT device_id, reason FROM dead_letters") == [
        ("sec-a", "device_mismatch")
    ]


def wait_until(predicate: Any, what: str) -> None:
    asyncio.run(wait_for(predicate, timeout_s=30, what=what))


def wait_for_subscription(ingest: ServiceProcess) -> None:
    def subscribed() -> bool:
        status, answer = request(ingest.url, "GET", "/readyz")
        return status == 200 and answer["checks"].get("mqtt") == "ok"

    wait_until(subscribed, "ingest to connect to the broker")


# --- a read key cannot write -------------------------------------------------------------


@pytest.fixture
def api(plain_db_url: str) -> Iterator[str]:
    register(plain_db_url, "sec-a")
    with serve_api(plain_db_url, ADMIN_KEY) as url:
        yield url


def operations(api_url: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every (method, path, operation) of the served OpenAPI document."""
    status, document = request(api_url, "GET", "/v1/openapi.json")
    assert status == 200
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def concrete(template: str) -> str:
    """The path of a route template, every parameter filled in (ids of rows that may not exist:
    the key is checked first)."""
    fills = (
        ("{device_id}", "sec-a"),
        ("{child_id}", "sec-b"),
        ("{rule_id}", "1"),
        ("{webhook_id}", "1"),
    )
    for name, value in fills:
        template = template.replace(name, value)
    assert "{" not in template, template
    return template


def test_a_read_key_gets_403_on_every_admin_or_write_route(api: str, plain_db_url: str) -> None:
    read_key = new_key(plain_db_url, "read")
    checked = []
    for method, template, operation in operations(api):
        path = concrete(template)
        if method != "GET":
            # Writes are for admins only, so their documentation must say 403.
            assert "403" in operation["responses"], (method, template)
        if "403" not in operation["responses"]:
            continue
        body = json.dumps({"device_id": "sec-new"}).encode() if method == "POST" else None
        headers = {"Authorization": f"Bearer {read_key}", "Content-Type": "application/json"}
        status, answer = request(api, method, path, body, headers)
        assert (status, answer["error"]) == (403, "forbidden"), (method, template)
        checked.append((method, template))
    assert ("POST", "/v1/devices") in checked
    assert ("DELETE", "/v1/devices/{device_id}") in checked
    # Nothing was written: the device is still there, with its token, and alone.
    assert rows(plain_db_url, "SELECT device_id, token_hash IS NOT NULL FROM devices") == [
        ("sec-a", True)
    ]


def test_every_keyed_route_refuses_a_missing_or_unknown_key(api: str) -> None:
    for method, template, operation in operations(api):
        if "401" not in operation["responses"]:
            continue
        path = concrete(template)
        for headers in ({}, {"Authorization": "Bearer ak_unknown"}, {"Authorization": "Basic x"}):
            status, answer = request(api, method, path, None, headers)
            assert (status, answer["error"]) == (401, "unauthorized"), (method, template)


# --- secrets are stored hashed -----------------------------------------------------------


def dump(db_url: str) -> str:
    """Every row of every table, as text."""
    tables = rows(
        db_url,
        "SELECT table_schema, table_name FROM information_schema.tables"
        " WHERE table_type = 'BASE TABLE'"
        " AND table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        return "\n".join(
            str(row[0])
            for schema, table in tables
            for row in conn.execute(
                sql.SQL("SELECT row_to_json(t)::text FROM {}.{} t").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
            ).fetchall()
        )


def test_tokens_and_keys_are_stored_only_as_digests(api: str, plain_db_url: str) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
    body = json.dumps({"device_id": "sec-new"}).encode()
    status, created = request(api, "POST", "/v1/devices", body, admin)
    assert status == 201
    status, rotated = request(api, "POST", "/v1/devices/sec-new/token", None, admin)
    assert status == 200
    read_key = new_key(plain_db_url, "read")
    secrets = [created["token"], rotated["token"], read_key, ADMIN_KEY]
    text = dump(plain_db_url)
    for secret in secrets:
        assert secret not in text
        assert secret.encode().hex() not in text
    # What is stored is the SHA-256 digest (bytea shows as hex).
    assert hashlib.sha256(rotated["token"].encode()).hexdigest() in text
    assert hashlib.sha256(read_key.encode()).hexdigest() in text
    assert hashlib.sha256(created["token"].encode()).hexdigest() not in text  # rotated away


# --- comparisons take constant time ------------------------------------------------------


class CompareSpy:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes]] = []
        self.real = hmac.compare_digest

    def __call__(self, a: bytes, b: bytes) -> bool:
        self.calls.append((bytes(a), bytes(b)))
        return self.real(a, b)


def test_device_tokens_are_compared_with_compare_digest(
    plain_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = register(plain_db_url, "sec-a")
    spy = CompareSpy()
    monkeypatch.setattr(hmac, "compare_digest", spy)

    async def authenticate() -> DeviceRef | None:
        async with await psycopg.AsyncConnection.connect(plain_db_url, autocommit=True) as conn:
            return await device_by_token(conn, hash_token(token))

    ref = asyncio.run(authenticate())
    assert ref is not None
    assert ref.device_id == "sec-a"
    assert spy.calls == [(hash_token(token), hash_token(token))]


def test_api_keys_are_compared_with_compare_digest(
    plain_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_key = new_key(plain_db_url, "read")
    spy = CompareSpy()
    monkeypatch.setattr(hmac, "compare_digest", spy)

    async def authenticate() -> list[Principal]:
        store = KeyStore(ADMIN_KEY, TokenBuckets(1000, 1000))
        db = Database(plain_db_url, min_size=1, max_size=1)
        await db.open()
        try:
            return [
                await store.authenticate(db, f"Bearer {ADMIN_KEY}", "admin"),
                await store.authenticate(db, f"Bearer {read_key}", "read"),
            ]
        finally:
            await db.close()

    admin, reader = asyncio.run(authenticate())
    assert (admin.scope, reader.scope) == ("admin", "read")
    admin_digest, read_digest = hash_key(ADMIN_KEY), hash_key(read_key)
    assert (admin_digest, admin_digest) in spy.calls  # the bootstrap key
    assert (read_digest, read_digest) in spy.calls  # a stored key, after the lookup


# --- rate limits per device and per key -------------------------------------------------


def test_each_device_has_its_own_rate_limit(plain_db_url: str) -> None:
    token_a = register(plain_db_url, "sec-a")
    token_b = register(plain_db_url, "sec-b")
    config = intake_config(plain_db_url, http_rate_per_device=0.01, http_burst_per_device=2)
    with serve_intake(config) as url:
        statuses = [post(url, token_a, {"values": {"t": i}})[0] for i in range(3)]
        limited = request(
            url,
            "POST",
            "/v1/telemetry",
            b'{"values": {"t": 1}}',
            {"Authorization": f"Bearer {token_a}", "Content-Type": "application/json"},
        )
        other = post(url, token_b, {"values": {"t": 1}})
    assert statuses == [200, 200, 429]
    assert limited[0] == 429
    assert limited[1]["error"] == "rate_limited"
    assert other[0] == 200


def test_each_api_key_has_its_own_rate_limit(plain_db_url: str) -> None:
    key_a, key_b = new_key(plain_db_url, "read"), new_key(plain_db_url, "read")
    with serve_api(plain_db_url, ADMIN_KEY, api_rate_per_key=0.01, api_burst_per_key=2) as url:
        answers = [
            request(url, "GET", "/v1/devices", headers={"Authorization": f"Bearer {key_a}"})
            for _ in range(3)
        ]
        other = request(url, "GET", "/v1/devices", headers={"Authorization": f"Bearer {key_b}"})
    assert [status for status, _ in answers] == [200, 200, 429]
    assert answers[2][1]["error"] == "rate_limited"
    assert other[0] == 200
