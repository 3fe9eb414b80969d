"""Fleet aggregates by tag: the numbers the raw rows give, per group, on both paths."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient
from psycopg.types.json import Jsonb

from tests.api.conftest import ADMIN
from tests.api.helpers import refresh_rollups
from tests.ingest.helpers import T0, add_device, open_writer

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FLEET: dict[str, dict[str, str]] = {
    "b-1": {"site": "berlin", "room": "r1"},
    "b-2": {"site": "berlin", "room": "r1"},
    "b-3": {"site": "berlin", "room": "r2"},
    "b-4": {"site": "berlin"},  # no room: the null group
    "p-1": {"site": "paris", "room": "r1"},
}
Readings = dict[str, list[tuple[datetime, float]]]


async def _load(db_url: str, storage_mode: str) -> Readings:
    """About 3 hours of irregular temperatures per device, and a boolean metric beside."""
    rng = random.Random(3)
    data: Readings = {}
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        keys = {}
        for device_id, metadata in FLEET.items():
            keys[device_id] = await add_device(conn, device_id)
            await conn.execute(
                "UPDATE devices SET metadata = %s WHERE device_key = %s",
                [Jsonb(metadata), keys[device_id]],
            )
    async with open_writer(db_url, storage_mode) as writer:
        for device_id, key in keys.items():
            t, rows = T0 - timedelta(minutes=17, seconds=3), []
            while t < T0 + timedelta(hours=3):
                t += timedelta(seconds=rng.uniform(5, 120))
                rows.append((t, rng.uniform(-10, 40)))
            data[device_id] = rows
            await writer.write(
                [(key, ts, {"temperature": v}) for ts, v in rows],
                typed=[(key, rows[0][0], {"door": True})],
            )
    await refresh_rollups(db_url, storage_mode)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO metric_units SELECT device_key, metric_key, 'Cel'"
            " FROM devices, metrics m WHERE m.name = 'temperature' AND device_id LIKE 'b-%'"
        )
    return data


def _expected(
    data: Readings,
    devices: list[str],
    group_by: str | None,
    start: datetime,
    end: datetime,
    step: int,
) -> dict[str | None, dict[datetime, list[float]]]:
    out: dict[str | None, dict[datetime, list[float]]] = defaultdict(lambda: defaultdict(list))
    for device_id in devices:
        group = None if group_by is None else FLEET[device_id].get(group_by)
        for ts, value in data[device_id]:
            if start <= ts < end:
                offset = math.floor((ts - EPOCH).total_seconds() / step) * step
                out[group][EPOCH + timedelta(seconds=offset)].append(value)
    return out


def _z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


async def _aggregate(client: TestClient, status: int = 200, **params: Any) -> Any:  # type: ignore[type-arg]
    query = [
        (k, v)
        for k, values in params.items()
        for v in (values if isinstance(values, list) else [values])
    ]
    response = await client.get("/v1/aggregate", params=query, headers=ADMIN)
    assert response.status == status, await response.text()
    return await response.json()


@pytest.mark.parametrize(
    ("bucket", "step", "source"),
    [
        ("1h", 3600, "rollup_1h"),
        ("15m", 900, "rollup_1m"),
        ("1d", 86400, "raw"),
    ],  # no whole day in the range
)
async def test_fleet_aggregates_equal_the_raw_rows_by_group(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
    bucket: str,
    step: int,
    source: str,
) -> None:
    data = await _load(db_url, storage_mode)
    # Edges inside buckets: the partial head and tail come from raw rows.
    start, end = T0 - timedelta(minutes=13, seconds=7), T0 + timedelta(hours=2, minutes=41)
    answer = await _aggregate(
        client,
        metric="temperature",
        tag="site:berlin",
        start=_z(start),
        end=_z(end),
        bucket=bucket,
        agg="avg,min,max,count,sum",
        group_by="room",
    )
    assert (answer["source"], answer["unit"], answer["devices"]) == (source, "Cel", 4)
    assert answer["tags"] == {"site": "berlin"}
    berlin = [d for d, m in FLEET.items() if m["site"] == "berlin"]
    expected = _expected(data, berlin, "room", start, end, step)
    assert [(g["group"], g["devices"]) for g in answer["groups"]] == [
        ("r1", 2),
        ("r2", 1),
        (None, 1),
    ]
    for group in answer["groups"]:
        buckets = expected[group["group"]]
        assert [p["ts"] for p in group["points"]] == [_z(b) for b in sorted(buckets)]
        for point in group["points"]:
            values = buckets[datetime.fromisoformat(point["ts"])]
            assert point["count"] == len(values)
            assert point["min"] == min(values)
            assert point["max"] == max(values)
            assert point["sum"] == pytest.approx(math.fsum(values), rel=1e-9)
            assert point["avg"] == pytest.approx(math.fsum(values) / len(values), rel=1e-9)


async def test_without_tags_or_groups_every_device_is_one_series(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    data = await _load(db_url, storage_mode)
    start, end = T0, T0 + timedelta(hours=3)
    answer = await _aggregate(
        client, metric="temperature", start=_z(start), end=_z(end), bucket="1h", agg="count"
    )
    # Paris gave no unit, Berlin Cel: devices without a unit do not conflict.
    assert answer["unit"] == "Cel"
    expected = _expected(data, list(FLEET), None, start, end, 3600)
    assert [g["group"] for g in answer["groups"]] == [None]
    assert [p["count"] for p in answer["groups"][0]["points"]] == [
        len(expected[None][b]) for b in sorted(expected[None])
    ]
    two = await _aggregate(
        client,
        metric="temperature",
        tag=["site:berlin", "room:r1"],
        start=_z(start),
        end=_z(end),
        bucket="3h",
        agg="count",
    )
    expected = _expected(data, ["b-1", "b-2"], None, start, end, 10800)
    assert [p["count"] for p in two["groups"][0]["points"]] == [
        len(expected[None][b]) for b in sorted(expected[None])
    ]


async def test_what_cannot_be_aggregated_across_devices_is_a_400(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    await _load(db_url, storage_mode)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO metric_units SELECT device_key, metric_key, 'degF'"
            " FROM devices, metrics m WHERE m.name = 'temperature' AND device_id = 'p-1'"
        )
    mixed = await _aggregate(client, 400, metric="temperature", bucket="1h")
    assert "2 units (Cel, degF)" in mixed["detail"]
    typed = await _aggregate(client, 400, metric="door", bucket="1h")
    assert "boolean" in typed["detail"]
    for params in ({"agg": "states"}, {"bucket": "30s"}, {"tag": "site"}, {"group_by": ""}):
        await _aggregate(client, 400, metric="temperature", **params)
    nothing = await _aggregate(client, metric="never_stored", tag="site:paris", bucket="1h")
    assert nothing["groups"] == [{"group": None, "devices": 1, "points": []}]
    nobody = await _aggregate(client, metric="temperature", tag="site:nowhere", bucket="1h")
    assert (nobody["devices"], nobody["groups"]) == (0, [])
