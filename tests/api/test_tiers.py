"""Bucketed reads once retention has thinned the finer tiers: the finest that holds the start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from tests.api.conftest import ADMIN
from tests.ingest.helpers import migrate_tiered, run_retention, store_ages


async def _get(
    client: TestClient,  # type: ignore[type-arg]
    start: datetime,
    hours: float,
    bucket: str,
) -> dict[str, Any]:
    r = await client.get(
        "/v1/devices/meter/readings",
        params={
            "start": start.isoformat(),
            "end": (start + timedelta(hours=hours)).isoformat(),
            "bucket": bucket,
            "agg": "count,sum,first,last",
        },
        headers=ADMIN,
    )
    assert r.status == 200, await r.text()
    body: dict[str, Any] = await r.json()
    return body


async def test_ranges_past_a_tiers_horizon_come_from_the_finest_tier_that_holds_them(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    storage = await migrate_tiered(db_url, storage_mode)
    now = datetime.now(UTC)
    await store_ages(db_url, storage_mode, "meter", now)
    await run_retention(db_url, storage_mode, storage)
    hour = now.replace(minute=0, second=0, microsecond=0)
    whole = {"count": 10, "sum": 45.0, "first": 0.0, "last": 9.0}
    # (age in days, bucket asked for) -> (source, bucket answered)
    cases = {
        (3, "30s"): ("raw", "30s"),  # raw is kept 10 days
        (3, "1h"): ("rollup_1h", "1h"),
        (20, "30s"): ("rollup_1m", "1m"),  # raw is gone, the 1-minute rollup is not
        (20, "1m"): ("rollup_1m", "1m"),
        (45, "5m"): ("rollup_1h", "1h"),
        (90, "1m"): ("rollup_1d", "1d"),
        (90, "1h"): ("rollup_1d", "1d"),
    }
    for (age, bucket), (source, answered) in cases.items():
        day = (hour - timedelta(days=age)).replace(hour=0)
        body = await _get(client, day, 24, bucket)
        assert (body["source"], body["bucket"]) == (source, answered), (age, bucket)
        points = [p for s in body["series"] for p in s["points"]]
        assert [{k: p[k] for k in whole} for p in points] == [whole], (age, bucket)
    # Older than every tier: the coarsest serves what it has, which is nothing.
    body = await _get(client, (hour - timedelta(days=150)).replace(hour=0), 24, "1h")
    assert (body["source"], body["series"]) == ("rollup_1d", [])
