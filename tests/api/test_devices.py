"""Device registry over HTTP: create, list, status, delete, rotate; latest values."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from aiohttp.test_utils import TestClient

from api.models import FleetLatestPage
from core.registry import device_by_token, hash_token
from tests.api.conftest import ADMIN
from tests.api.helpers import refresh_rollups
from tests.ingest.helpers import T0, fetch_all, open_writer, series


async def _key_of(db_url: str, device_id: str) -> int:
    rows = await fetch_all(
        db_url, f"SELECT device_key FROM devices WHERE device_id = '{device_id}'"
    )
    return int(str(rows[0][0]))


async def test_create_returns_a_working_token_once(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
) -> None:
    body = {
        "device_id": "pump-1",
        "name": "Pump",
        "metadata": {"site": "A"},
        "expected_interval_s": 10,
    }
    r = await client.post("/v1/devices", json=body, headers=ADMIN)
    assert r.status == 201
    created = await r.json()
    assert created["device_id"] == "pump-1"
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        ref = await device_by_token(conn, hash_token(created["token"]))
    assert ref is not None
    assert ref.device_id == "pump-1"
    r = await client.post("/v1/devices", json=body, headers=ADMIN)
    assert r.status == 409
    device = await (await client.get("/v1/devices/pump-1", headers=ADMIN)).json()
    assert "token" not in device
    assert device["metadata"] == {"site": "A"}
    assert device["status"] == "never_seen"
    assert device["last_seen"] is None


async def test_create_rejects_bad_bodies(client: TestClient) -> None:  # type: ignore[type-arg]
    for body in (
        {"device_id": "bad id"},
        {"name": "x"},
        {"device_id": "a", "expected_interval_s": 0},
    ):
        r = await client.post("/v1/devices", json=body, headers=ADMIN)
        assert r.status == 400, body
    r = await client.post("/v1/devices", data=b"{", headers=ADMIN)
    assert r.status == 400


async def test_status_from_expected_interval_and_list_filter_and_pages(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    for i in range(5):
        await client.post(
            "/v1/devices", json={"device_id": f"d{i}", "expected_interval_s": 10}, headers=ADMIN
        )
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        # d0, d1 heard recently; d2 silent for 10 intervals; d3, d4 never.
        await conn.execute(
            "UPDATE devices SET last_seen = %s WHERE device_id IN ('d0', 'd1')", [now]
        )
        await conn.execute(
            "UPDATE devices SET last_seen = %s WHERE device_id = 'd2'",
            [now - timedelta(seconds=100)],
        )
    statuses = {}
    for i in range(5):
        device = await (await client.get(f"/v1/devices/d{i}", headers=ADMIN)).json()
        statuses[device["device_id"]] = device["status"]
    assert statuses == {
        "d0": "online", "d1": "online", "d2": "offline", "d3": "never_seen", "d4": "never_seen"
    }  # fmt: skip
    page = await (await client.get("/v1/devices?status=online", headers=ADMIN)).json()
    assert [d["device_id"] for d in page["devices"]] == ["d0", "d1"]
    seen, cursor = [], None
    while True:
        query = "/v1/devices?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(query, headers=ADMIN)).json()
        seen += [d["device_id"] for d in page["devices"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["d0", "d1", "d2", "d3", "d4"]
    assert (await client.get("/v1/devices?cursor=zzz", headers=ADMIN)).status == 400
    assert (await client.get("/v1/devices?status=asleep", headers=ADMIN)).status == 400
    fleet = await (await client.get("/v1/fleet", headers=ADMIN)).json()
    assert fleet["devices"] == {"total": 5, "online": 2, "offline": 1, "never_seen": 2}


async def test_delete_removes_device_readings_and_rollups(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    for name in ("gone", "kept"):
        await client.post("/v1/devices", json={"device_id": name}, headers=ADMIN)
    gone, kept = await _key_of(db_url, "gone"), await _key_of(db_url, "kept")
    async with open_writer(db_url, storage_mode) as writer:
        await writer.write(series(gone, T0, 120) + series(kept, T0, 120))
    await refresh_rollups(db_url, storage_mode)
    r = await client.delete("/v1/devices/gone", headers=ADMIN)
    assert r.status == 204
    assert (await client.get("/v1/devices/gone", headers=ADMIN)).status == 404
    assert (await client.delete("/v1/devices/gone", headers=ADMIN)).status == 404
    assert await fetch_all(db_url, "SELECT DISTINCT device_key FROM readings") == [(kept,)]
    assert await fetch_all(db_url, "SELECT DISTINCT device_key FROM latest_readings") == [(kept,)]
    if storage_mode == "plain":
        for view in ("readings_1m", "readings_1h", "readings_1d"):
            rows = await fetch_all(db_url, f"SELECT DISTINCT device_key FROM {view}")
            assert rows == [(kept,)]


async def test_rotate_token_invalidates_the_old_one(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
) -> None:
    old = (await (await client.post("/v1/devices", json={"device_id": "r"}, headers=ADMIN)).json())[
        "token"
    ]
    r = await client.post("/v1/devices/r/token", headers=ADMIN)
    assert r.status == 200
    new = (await r.json())["token"]
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        assert await device_by_token(conn, hash_token(old)) is None
        assert await device_by_token(conn, hash_token(new)) is not None
    assert (await client.post("/v1/devices/nope/token", headers=ADMIN)).status == 404


async def test_latest_per_device_and_fleet_wide(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    for name in ("a", "b", "c"):
        await client.post("/v1/devices", json={"device_id": name}, headers=ADMIN)
    a, b = await _key_of(db_url, "a"), await _key_of(db_url, "b")
    async with open_writer(db_url, storage_mode) as writer:
        await writer.write(series(a, T0, 10))
        await writer.write(
            [
                (b, T0, {"temperature": 1.5}),
                (b, T0 + timedelta(hours=3), {"humidity": 7.0}),
                (b, T0 + timedelta(hours=3, microseconds=120), {"pressure": -1e20}),
            ]
        )
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE devices d SET last_seen = (SELECT max(time) FROM readings r"
            " WHERE r.device_key = d.device_key)"
        )
    latest = await (await client.get("/v1/devices/a/latest", headers=ADMIN)).json()
    last = T0 + timedelta(seconds=9)
    assert latest == {
        "device_id": "a",
        "values": [
            {
                "metric": "humidity",
                "ts": last.isoformat().replace("+00:00", "Z"),
                "value": 91.25,
                "unit": None,
            },
            {
                "metric": "temperature",
                "ts": last.isoformat().replace("+00:00", "Z"),
                "value": 90.25,
                "unit": None,
            },
        ],
    }
    assert (await client.get("/v1/devices/zz/latest", headers=ADMIN)).status == 404
    page = await (await client.get("/v1/latest?limit=2", headers=ADMIN)).json()
    assert [d["device_id"] for d in page["devices"]] == ["a", "b"]
    assert {v["metric"]: (v["ts"], v["value"]) for v in page["devices"][1]["values"]} == {
        "temperature": ("2026-11-20T10:00:00Z", 1.5),
        "humidity": ("2026-11-20T13:00:00Z", 7.0),
        "pressure": ("2026-11-20T13:00:00.00012Z", -1e20),
    }
    rest = await (
        await client.get(f"/v1/latest?cursor={page['next_cursor']}", headers=ADMIN)
    ).json()
    assert rest == {"devices": [{"device_id": "c", "values": []}], "next_cursor": None}
    only = await (await client.get("/v1/latest?metric=humidity", headers=ADMIN)).json()
    assert [len(d["values"]) for d in only["devices"]] == [1, 1, 0]


async def test_fleet_latest_built_by_postgresql_matches_the_models(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    """/v1/latest is encoded in SQL: it must say what the models say, byte for value."""
    ids = [f"d{i:02}" for i in range(12)]
    for name in ids:
        await client.post("/v1/devices", json={"device_id": name}, headers=ADMIN)
    times = [T0, T0 + timedelta(microseconds=5), T0 + timedelta(seconds=1, microseconds=999_999)]
    async with open_writer(db_url, storage_mode) as writer:
        for i, name in enumerate(ids[:-1]):  # the last device never reports
            key = await _key_of(db_url, name)
            values = {"temperature": i / 3, "humidity": -1e-7 * i, "count": float(10**i)}
            await writer.write([(key, times[i % 3], values)])
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE devices d SET last_seen = (SELECT max(time) FROM readings r"
            " WHERE r.device_key = d.device_key)"
        )
    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = "/v1/latest?limit=5" + (f"&cursor={cursor}" if cursor else "")
        r = await client.get(query, headers=ADMIN)
        assert r.status == 200
        assert r.content_type == "application/json"
        body = await r.read()
        FleetLatestPage.model_validate_json(body)
        page = json.loads(body)
        pages.extend(page["devices"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [d["device_id"] for d in pages] == ids
    assert pages[-1] == {"device_id": ids[-1], "values": []}
    for device in pages:
        r = await client.get(f"/v1/devices/{device['device_id']}/latest", headers=ADMIN)
        assert _instants(device) == _instants(await r.json())


def _instants(device: dict[str, Any]) -> dict[str, Any]:
    """A latest-values answer with its times parsed (RFC 3339 allows 0 to 6 fraction digits)."""
    return {
        "device_id": device["device_id"],
        "values": [{**v, "ts": datetime.fromisoformat(v["ts"])} for v in device["values"]],
    }
