"""``GET /v1/devices`` sorted, searched and paged: what the console's fleet table asks for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from tests.api.conftest import ADMIN

NOW = datetime.now(UTC)
# id, name, seconds since last seen (None: never), seq gaps.
FLEET = [
    ("pump-01", "North pump", 5, 0),
    ("pump-02", None, 5, 3),
    ("pump-03", "Spare", None, 0),
    ("Boiler-1", "Boiler PUMP room", 4000, 7),
    ("sensor-a", "Greenhouse", 30, 3),
    ("sensor-b", "greenhouse east", None, 1),
    ("sensor-c", None, 30, 12),
]


@pytest.fixture
async def fleet(client: TestClient, db_url: str) -> TestClient:  # type: ignore[type-arg]
    for device_id, name, _, _ in FLEET:
        body = {"device_id": device_id, "name": name, "expected_interval_s": 60}
        assert (await client.post("/v1/devices", json=body, headers=ADMIN)).status == 201
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        for device_id, _, ago_s, gaps in FLEET:
            seen = None if ago_s is None else NOW - timedelta(seconds=ago_s)
            await conn.execute(
                "UPDATE devices SET last_seen = %s, seq_gaps = %s WHERE device_id = %s",
                [seen, gaps, device_id],
            )
    return client


async def _all_pages(
    client: TestClient,  # type: ignore[type-arg]
    query: str,
    limit: int = 2,
) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        url = f"/v1/devices?limit={limit}&{query}" + (f"&cursor={cursor}" if cursor else "")
        r = await client.get(url, headers=ADMIN)
        assert r.status == 200, await r.text()
        page = await r.json()
        seen += [d["device_id"] for d in page["devices"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def _expected(key: Any, *, reverse: bool = False, keep: Any = None) -> list[str]:
    rows = [row for row in FLEET if keep is None or keep(row)]
    rows.sort(key=lambda row: (key(row), row[0]), reverse=reverse)
    return [row[0] for row in rows]


def _last_seen(row: tuple[Any, ...]) -> float:
    # Never seen is the earliest; more seconds ago is earlier.
    return float("-inf") if row[2] is None else -row[2]


@pytest.mark.parametrize("limit", [1, 2, 3, 100])
async def test_every_sort_pages_through_all_devices_in_order(
    fleet: TestClient,  # type: ignore[type-arg]
    limit: int,
) -> None:
    assert await _all_pages(fleet, "sort=device_id", limit) == _expected(lambda r: r[0])
    assert await _all_pages(fleet, "sort=-device_id", limit) == _expected(
        lambda r: r[0], reverse=True
    )
    assert await _all_pages(fleet, "sort=last_seen", limit) == _expected(_last_seen)
    assert await _all_pages(fleet, "sort=-last_seen", limit) == _expected(_last_seen, reverse=True)
    assert await _all_pages(fleet, "sort=seq_gaps", limit) == _expected(lambda r: r[3])
    assert await _all_pages(fleet, "sort=-seq_gaps", limit) == _expected(
        lambda r: r[3], reverse=True
    )


async def test_search_matches_id_or_name_in_any_case_with_status_and_sort(
    fleet: TestClient,  # type: ignore[type-arg]
) -> None:
    assert await _all_pages(fleet, "search=PUMP") == ["Boiler-1", "pump-01", "pump-02", "pump-03"]
    assert await _all_pages(fleet, "search=greenhouse&sort=-seq_gaps") == ["sensor-a", "sensor-b"]
    assert await _all_pages(fleet, "search=pump&status=online&sort=-seq_gaps") == [
        "pump-02",
        "pump-01",
    ]
    assert await _all_pages(fleet, "status=never_seen&sort=-last_seen") == ["sensor-b", "pump-03"]
    assert await _all_pages(fleet, "search=100%25_") == []


async def test_a_cursor_belongs_to_its_sort(fleet: TestClient) -> None:  # type: ignore[type-arg]
    page = await (await fleet.get("/v1/devices?limit=1&sort=seq_gaps", headers=ADMIN)).json()
    cursor = page["next_cursor"]
    r = await fleet.get(f"/v1/devices?limit=1&sort=-seq_gaps&cursor={cursor}", headers=ADMIN)
    assert r.status == 400
    assert (await r.json())["detail"] == "cursor: a cursor of sort=seq_gaps, not -seq_gaps"
    r = await fleet.get(f"/v1/devices?cursor={cursor}", headers=ADMIN)
    assert r.status == 400
    for bad in ("sort=name", "search=", "search=" + "x" * 65, "search=a%00b"):
        assert (await fleet.get(f"/v1/devices?{bad}", headers=ADMIN)).status == 400, bad
