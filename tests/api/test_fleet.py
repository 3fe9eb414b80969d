"""Fleet summary, dead letters, and the service endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp.test_utils import TestClient

from api import create_app
from core.settings import DatabaseSettings
from ingest.records import DeadLetter
from tests.api.conftest import ADMIN, ClientFactory, api_settings
from tests.api.helpers import load
from tests.ingest.helpers import open_writer, series


async def test_fleet_counts_recent_readings(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    # 10 readings a minute for two hours, two metrics: 20 in the last minute-ish.
    await load(
        db_url, storage_mode, "f", series(0, now - timedelta(hours=2), 720, timedelta(seconds=10))
    )
    fleet = await (await client.get("/v1/fleet", headers=ADMIN)).json()
    assert fleet["readings_last_hour"] in range(718, 723)
    assert fleet["readings_last_minute"] in range(10, 15)
    assert fleet["devices"]["total"] == 1


async def test_rejects_filters_and_pages(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    t = datetime(2026, 11, 20, tzinfo=UTC)
    letters = [
        DeadLetter("http", "schema", f"item {i}", b"\xff{" if i == 0 else b"{}",
                   "a" if i % 2 else "b", i, t + timedelta(minutes=i))
        for i in range(7)
    ] + [DeadLetter("mqtt", "malformed_json", "x", b"[", None, None, t)]  # fmt: skip
    async with open_writer(db_url, storage_mode) as writer:
        await writer.write_dead_letters(letters)
    everything = await (await client.get("/v1/rejects", headers=ADMIN)).json()
    assert len(everything["dead_letters"]) == 8
    first = everything["dead_letters"][-1]
    assert first["payload"] == "\ufffd{"
    assert first["payload_base64"] == "/3s="
    page = await (await client.get("/v1/rejects?device_id=a&limit=2", headers=ADMIN)).json()
    assert [d["item_index"] for d in page["dead_letters"]] == [5, 3]
    rest = await (
        await client.get(f"/v1/rejects?device_id=a&cursor={page['next_cursor']}", headers=ADMIN)
    ).json()
    assert [d["item_index"] for d in rest["dead_letters"]] == [1]
    assert rest["next_cursor"] is None
    mqtt = await (await client.get("/v1/rejects?source=mqtt", headers=ADMIN)).json()
    assert [d["reason"] for d in mqtt["dead_letters"]] == ["malformed_json"]
    ranged = await (
        await client.get(
            "/v1/rejects",
            params={
                "reason": "schema",
                "start": "2026-11-20T00:02:00Z",
                "end": "2026-11-20T00:04:00Z",
            },
            headers=ADMIN,
        )
    ).json()
    assert [d["item_index"] for d in ranged["dead_letters"]] == [3, 2]


async def test_health_ready_metrics(
    client: TestClient,  # type: ignore[type-arg]
    storage_mode: str,
) -> None:
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    assert await (await client.get("/readyz")).json() == {
        "ready": True,
        "checks": {"database": "ok"},
    }
    await client.get("/v1/fleet", headers=ADMIN)
    text = await (await client.get("/metrics")).text()
    assert 'api_requests_total{route="get_fleet",status="200"}' in text
    assert "api_request_seconds_bucket" in text
    r = await client.get("/v1/nothing-here")
    assert r.status == 404
    assert (await r.json())["error"] == "not_found"


async def test_database_down_is_503_and_not_ready(aiohttp_client: ClientFactory) -> None:
    bad = DatabaseSettings(database_url="postgresql://nobody@127.0.0.1:1/x", db_pool_min=1)
    client = await aiohttp_client(create_app(api_settings(api_db_wait_s=0.5), bad))
    r = await client.get("/readyz")
    assert r.status == 503
    assert (await r.json())["ready"] is False
    r = await client.get("/v1/fleet", headers=ADMIN)
    assert r.status == 503
    assert r.headers["Retry-After"] == "2"
    # The bootstrap key needs no database; a stored key does.
    r = await client.get("/v1/fleet", headers={"Authorization": "Bearer ak_other"})
    assert r.status == 503
