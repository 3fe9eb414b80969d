"""agg=increase and agg=rate: exact against hand-computed values, resets and bucket edges.

The counter (seconds after T0 -> value), with the increase each reading adds:

    minute 0:   0s 100 (first)   20s 150 (+50)   40s 30 (reset: +30)   59s 50 (+20)   = 100
    minute 1:  70s 80 (+30 from 50 across the edge)   100s 10 (reset: +10)   119s 25 (+15) = 55
    minute 2: 130s 5 (reset across the edge: +5)   170s 45 (+40)                         = 45
    minute 3:  nothing
    minute 4: 250s 60 (+15 from 45, two edges back)                                     = 15

215 in all. Both paths, from raw readings and from every rollup.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ingest.records import ReadingSet
from tests.api.conftest import ADMIN
from tests.api.helpers import load, refresh_rollups
from tests.ingest.helpers import T0

COUNTER = {0: 100, 20: 150, 40: 30, 59: 50, 70: 80, 100: 10, 119: 25, 130: 5, 170: 45, 250: 60}
MINUTE = timedelta(minutes=1)


async def _counter(
    client: TestClient,  # type: ignore[type-arg]
    start: datetime,
    end: datetime,
    bucket: str,
) -> tuple[str, list[tuple[datetime, float, float]]]:
    r = await client.get(
        "/v1/devices/meter/readings",
        params={
            "metric": "rx_bytes",
            "start": start.isoformat(),
            "end": end.isoformat(),
            "bucket": bucket,
            "agg": "increase,rate",
        },
        headers=ADMIN,
    )
    assert r.status == 200, await r.text()
    body: dict[str, Any] = await r.json()
    (series,) = body["series"]
    points = [(datetime.fromisoformat(p["ts"]), p["increase"], p["rate"]) for p in series["points"]]
    return body["source"], points


@pytest.fixture
async def stored(db_url: str, storage_mode: str) -> None:
    sets: list[ReadingSet] = [
        (0, T0 + timedelta(seconds=s), {"rx_bytes": float(v)}) for s, v in COUNTER.items()
    ]
    await load(db_url, storage_mode, "meter", sets)


@pytest.mark.usefixtures("stored")
@pytest.mark.parametrize("refreshed", [False, True])
async def test_increase_and_rate_count_resets_and_edges_per_bucket(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
    refreshed: bool,
) -> None:
    if refreshed:
        await refresh_rollups(db_url, storage_mode)
    source, points = await _counter(client, T0, T0 + 5 * MINUTE, "1m")
    assert source == ("rollup_1m" if refreshed or storage_mode == "timescale" else "raw")
    assert points == [
        (T0, 100.0, 100 / 60),
        (T0 + MINUTE, 55.0, 55 / 60),
        (T0 + 2 * MINUTE, 45.0, 45 / 60),
        (T0 + 4 * MINUTE, 15.0, 15 / 60),
    ]
    # Two-minute buckets are grouped from minutes; the last one ends with the range.
    _, points = await _counter(client, T0, T0 + 5 * MINUTE, "2m")
    assert points == [
        (T0, 155.0, 155 / 120),
        (T0 + 2 * MINUTE, 45.0, 45 / 120),
        (T0 + 4 * MINUTE, 15.0, 15 / 60),
    ]
    # A range starting inside a bucket: raw head (30, 50) then rollup rows; the first
    # bucket counts from its own first reading.
    _, points = await _counter(client, T0 + timedelta(seconds=30), T0 + 5 * MINUTE, "1m")
    assert points[:2] == [(T0, 20.0, 20 / 30), (T0 + MINUTE, 55.0, 55 / 60)]
    # Sub-minute buckets always come from raw readings.
    source, points = await _counter(client, T0, T0 + 2 * MINUTE, "30s")
    assert source == "raw"
    assert [p[1] for p in points] == [50.0, 50.0, 30.0, 25.0]


@pytest.mark.usefixtures("stored")
async def test_hour_and_day_rollups_keep_what_the_counter_lost_at_resets(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    await refresh_rollups(db_url, storage_mode)
    hour = timedelta(hours=1)
    source, points = await _counter(client, T0 - hour, T0 + 2 * hour, "1h")
    assert source == "rollup_1h"
    assert points == [(T0, 215.0, 215 / 3600)]
    day = T0.replace(hour=0)
    source, points = await _counter(client, day, day + timedelta(days=1), "1d")
    assert source == "rollup_1d"
    assert points == [(day, 215.0, 215 / 86400)]


@pytest.mark.usefixtures("stored")
async def test_counters_mix_with_the_other_aggregates(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    r = await client.get(
        "/v1/devices/meter/readings",
        params={
            "start": T0.isoformat(),
            "end": (T0 + 5 * MINUTE).isoformat(),
            "bucket": "5m",
            "agg": "max,last,increase",
        },
        headers=ADMIN,
    )
    body = await r.json()
    assert body["series"][0]["points"] == [
        {"ts": T0.isoformat().replace("+00:00", "Z"), "max": 150.0, "last": 60.0, "increase": 215.0}
    ]
