"""Changing devices: merge patches with history, tags, gateways and their children."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from api import queries
from api.auth import create_key
from api.merge_patch import merge_patch
from tests.api.conftest import ADMIN

PATCH = {**ADMIN, "Content-Type": "application/merge-patch+json"}


async def _json(response: Any, status: int = 200) -> Any:
    assert response.status == status, await response.text()
    return await response.json() if status != 204 else None


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        # The examples of RFC 7396, appendix A.
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_follows_rfc_7396(target: Any, patch: Any, result: Any) -> None:
    before = repr(target)
    assert merge_patch(target, patch) == result
    assert repr(target) == before  # the target is not changed in place


async def test_patch_changes_what_it_names_and_records_who_and_when(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
) -> None:
    created = {"device_id": "p1", "name": "Pump", "metadata": {"site": "berlin", "loc": {"x": 1}}}
    await _json(await client.post("/v1/devices", json=created, headers=ADMIN), 201)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        key = await create_key(conn, "admin", "ops")
        key_id = (await (await conn.execute("SELECT max(key_id) FROM api_keys")).fetchone() or [0])[
            0
        ]
    patch = {"metadata": {"site": "paris", "loc": {"y": 2}, "room": "b"}, "expected_interval_s": 30}
    device = await _json(await client.patch("/v1/devices/p1", json=patch, headers=PATCH))
    assert device["name"] == "Pump"  # left out: unchanged
    assert device["expected_interval_s"] == 30
    assert device["metadata"] == {"site": "paris", "loc": {"x": 1, "y": 2}, "room": "b"}
    ops = {"Authorization": f"Bearer {key}"}
    second = {"name": None, "metadata": {"loc": None}}
    device = await _json(await client.patch("/v1/devices/p1", json=second, headers=ops))
    assert (device["name"], device["metadata"]) == (None, {"site": "paris", "room": "b"})
    cleared = await _json(
        await client.patch("/v1/devices/p1", json={"metadata": None}, headers=ADMIN)
    )
    assert cleared["metadata"] == {}
    # The operator's metadata and the device's own attributes stay apart.
    assert (cleared["attributes"], cleared["attributes_at"]) == ({}, None)
    history = await _json(await client.get("/v1/devices/p1/changes", headers=ADMIN))
    assert [(c["key_id"], c["change"]) for c in history["changes"]] == [
        (None, {"metadata": None}),
        (key_id, second),
        (None, patch),
    ]
    assert all(c["changed_at"].endswith("Z") for c in history["changes"])
    page = await _json(await client.get("/v1/devices/p1/changes?limit=2", headers=ADMIN))
    rest = await _json(
        await client.get(f"/v1/devices/p1/changes?cursor={page['next_cursor']}", headers=ADMIN)
    )
    assert [c["change"] for c in page["changes"] + rest["changes"]] == [
        c["change"] for c in history["changes"]
    ]


async def test_patch_refuses_what_it_cannot_apply(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    await _json(await client.post("/v1/devices", json={"device_id": "p1"}, headers=ADMIN), 201)
    for body, status in (
        ({"device_id": "p2"}, 400),  # the id is not changed by a patch
        ({"expected_interval_s": 0}, 400),
        ({"metadata": ["a"]}, 400),
        ({"metadata": {"a": "x\x00"}}, 400),
        ({"name": "x" * 201}, 400),
    ):
        await _json(await client.patch("/v1/devices/p1", json=body, headers=PATCH), status)
    await _json(await client.patch("/v1/devices/nope", json={}, headers=PATCH), 404)
    read_only = await client.get("/v1/devices/p1/changes", headers=ADMIN)
    assert (await read_only.json())["changes"] == []


async def test_tags_select_devices_whose_metadata_holds_them_all(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    fleet = {
        "a": {"site": "berlin", "kind": "pump", "room": "1"},
        "b": {"site": "berlin", "kind": "meter"},
        "c": {"site": "paris", "kind": "pump"},
        "d": {"site": "berlin", "kind": "pump", "n": 5},
        "e": {},
    }
    for device_id, metadata in fleet.items():
        body = {"device_id": device_id, "metadata": metadata}
        await _json(await client.post("/v1/devices", json=body, headers=ADMIN), 201)

    async def ids(query: str) -> list[str]:
        page = await _json(await client.get(f"/v1/devices?{query}", headers=ADMIN))
        return [d["device_id"] for d in page["devices"]]

    assert await ids("tag=site:berlin") == ["a", "b", "d"]
    assert await ids("tag=site:berlin&tag=kind:pump") == ["a", "d"]
    assert await ids("tag=kind:pump&sort=-device_id") == ["d", "c", "a"]
    assert await ids("tag=site:berlin&limit=1") == ["a"]
    assert await ids("tag=room:1") == ["a"]
    assert await ids("tag=n:5") == []  # a tag's value is a string; 5 is a number
    assert await ids("tag=site:berlin%3Ax") == []  # the value is everything after the first colon
    assert await ids("tag=site:nowhere") == []
    for bad in ("tag=site", "tag=:x", "tag=site:a&tag=site:b"):
        await _json(await client.get(f"/v1/devices?{bad}", headers=ADMIN), 400)
    page = await _json(await client.get("/v1/devices?tag=site:berlin&limit=2", headers=ADMIN))
    rest = await _json(
        await client.get(
            f"/v1/devices?tag=site:berlin&limit=2&cursor={page['next_cursor']}", headers=ADMIN
        )
    )
    assert [d["device_id"] for d in rest["devices"]] == ["d"]


@pytest.mark.parametrize("storage_mode", ["plain"])  # the registry is the same on both paths
async def test_tag_filters_read_the_metadata_index_at_100_000_devices(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO devices (device_id, metadata)"
            " SELECT 'd' || lpad(g::text, 6, '0'), jsonb_build_object('site', 's' || (g % 100),"
            " 'kind', CASE WHEN g % 7 = 0 THEN 'pump' ELSE 'meter' END)"
            " FROM generate_series(1, 100000) g"
        )
        await conn.execute("ANALYZE devices")
        cur = await conn.execute(
            b"EXPLAIN " + queries.LIST_DEVICES[True].encode(),
            {
                "now": datetime.now(UTC),
                "default_interval_s": 60,
                "offline_after": 3,
                "status": None,
                "search": None,
                "limit": 101,
                "tags": '{"site": "s42", "kind": "pump"}',
                "after": "",
            },
        )
        plan = "\n".join(row[0] for row in await cur.fetchall())
    assert "devices_metadata" in plan, plan
    expected = [f"d{g:06d}" for g in range(1, 100_001) if g % 100 == 42 and g % 7 == 0]
    started = time.perf_counter()
    for _ in range(10):
        page = await _json(
            await client.get("/v1/devices?tag=site:s42&tag=kind:pump&limit=1000", headers=ADMIN)
        )
    per_request_s = (time.perf_counter() - started) / 10
    assert [d["device_id"] for d in page["devices"]] == expected
    assert per_request_s < 0.1, per_request_s


async def test_gateways_take_children_through_the_api(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    for body in (
        {"device_id": "hub", "gateway": True},
        {"device_id": "hub-2", "gateway": True},
        {"device_id": "ble-1"},
        {"device_id": "ble-2"},
    ):
        await _json(await client.post("/v1/devices", json=body, headers=ADMIN), 201)
    await _json(await client.put("/v1/devices/hub/children/ble-1", headers=ADMIN), 204)
    await _json(await client.put("/v1/devices/hub/children/ble-1", headers=ADMIN), 204)  # again
    await _json(await client.put("/v1/devices/hub/children/ble-2", headers=ADMIN), 204)
    children = await _json(await client.get("/v1/devices/hub/children", headers=ADMIN))
    assert children == {"gateway_id": "hub", "children": ["ble-1", "ble-2"]}
    ble = await _json(await client.get("/v1/devices/ble-1", headers=ADMIN))
    assert (ble["gateway"], ble["gateway_id"]) == (False, "hub")
    for path, status in (
        ("/v1/devices/hub-2/children/ble-1", 409),  # attached to another gateway
        ("/v1/devices/ble-2/children/ble-1", 409),  # not a gateway
        ("/v1/devices/hub/children/hub-2", 409),  # a gateway is nobody's child
        ("/v1/devices/hub/children/nope", 404),
    ):
        await _json(await client.put(path, headers=ADMIN), status)
    # A gateway with children stays one; a child does not become one.
    for device_id, gateway in (("hub", False), ("ble-1", True)):
        change = {"gateway": gateway}
        await _json(await client.patch(f"/v1/devices/{device_id}", json=change, headers=PATCH), 409)
    await _json(await client.delete("/v1/devices/hub/children/ble-1", headers=ADMIN), 204)
    await _json(await client.delete("/v1/devices/hub/children/ble-1", headers=ADMIN), 404)
    await _json(await client.delete("/v1/devices/hub", headers=ADMIN), 204)
    ble = await _json(await client.get("/v1/devices/ble-2", headers=ADMIN))
    assert ble["gateway_id"] is None  # deleting the gateway detaches its children
