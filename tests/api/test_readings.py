"""Raw ranges and bucketed aggregates: same numbers from rollups and raw, on both paths."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ingest.records import ReadingSet
from tests.api.conftest import ADMIN
from tests.api.helpers import load, refresh_rollups
from tests.ingest.helpers import T0

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Sums of sums associate differently from one sum over the rows.
REL = 1e-9


def _irregular(count: int, seed: int = 7) -> list[ReadingSet]:
    """Readings at irregular times over about 3 hours (two hour boundaries), two metrics."""
    rng = random.Random(seed)
    sets: list[ReadingSet] = []
    t = T0 - timedelta(minutes=20, seconds=13)
    for _ in range(count):
        t += timedelta(seconds=rng.uniform(0.2, 25.0))
        values = {"temperature": rng.uniform(-40, 60)}
        if rng.random() < 0.7:
            values["humidity"] = rng.uniform(0, 100) * 10 ** rng.randint(-3, 6)
        sets.append((0, t, values))
    return sets


def _expected(
    sets: list[ReadingSet], start: datetime, end: datetime, seconds: int
) -> dict[str, list[dict[str, Any]]]:
    buckets: dict[str, dict[datetime, list[tuple[datetime, float]]]] = defaultdict(dict)
    for _, ts, values in sets:
        if not start <= ts < end:
            continue
        offset = math.floor((ts - EPOCH).total_seconds() / seconds) * seconds
        bucket = EPOCH + timedelta(seconds=offset)
        for metric, value in values.items():
            buckets[metric].setdefault(bucket, []).append((ts, value))
    out: dict[str, list[dict[str, Any]]] = {}
    for metric, by_bucket in buckets.items():
        points = []
        for bucket in sorted(by_bucket):
            rows = sorted(by_bucket[bucket])
            vals = [v for _, v in rows]
            points.append(
                {
                    "ts": bucket,
                    "count": len(vals),
                    "sum": math.fsum(vals),
                    "avg": math.fsum(vals) / len(vals),
                    "min": min(vals),
                    "max": max(vals),
                    "first": vals[0],
                    "last": vals[-1],
                }
            )
        out[metric] = points
    return out


def _z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


async def _bucketed(
    client: TestClient,  # type: ignore[type-arg]
    start: datetime,
    end: datetime,
    bucket: str,
) -> dict[str, Any]:
    r = await client.get(
        "/v1/devices/dev/readings",
        params={
            "start": _z(start),
            "end": _z(end),
            "bucket": bucket,
            "agg": "avg,min,max,count,sum,first,last",
            "metric": "temperature,humidity",
        },
        headers=ADMIN,
    )
    assert r.status == 200, await r.text()
    body: dict[str, Any] = await r.json()
    return body


def _assert_matches(body: dict[str, Any], expected: dict[str, list[dict[str, Any]]]) -> None:
    got = {s["metric"]: s["points"] for s in body["series"]}
    assert set(got) == set(expected)
    for metric, points in expected.items():
        assert len(got[metric]) == len(points), metric
        for g, e in zip(got[metric], points, strict=True):
            assert datetime.fromisoformat(g["ts"]) == e["ts"]
            assert (g["count"], g["min"], g["max"], g["first"], g["last"]) == (
                e["count"], e["min"], e["max"], e["first"], e["last"]
            )  # fmt: skip
            assert g["sum"] == pytest.approx(e["sum"], rel=REL)
            assert g["avg"] == pytest.approx(e["avg"], rel=REL)


# Widths served by each table, and ranges aligned and not aligned on minutes and hours.
CASES = [
    ("1m", "rollup_1m"),
    ("7m", "rollup_1m"),
    ("1h", "rollup_1h"),
    ("2h", "rollup_1h"),
    ("1d", "rollup_1d"),
    ("30s", "raw"),
    ("90s", "raw"),
]
RANGES = [
    (T0 - timedelta(hours=1), T0 + timedelta(hours=3)),
    (T0 - timedelta(minutes=7, seconds=31), T0 + timedelta(hours=2, minutes=3, seconds=9)),
    (T0 + timedelta(minutes=3, seconds=0.5), T0 + timedelta(minutes=58, seconds=1)),
]


async def test_buckets_equal_raw_aggregates_from_every_source(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    sets = _irregular(900)
    await load(db_url, storage_mode, "dev", sets)
    # Before any refresh (plain: all raw; TimescaleDB: real-time aggregates), then after.
    for refreshed in (False, True):
        if refreshed:
            await refresh_rollups(db_url, storage_mode)
        for start, end in RANGES:
            for bucket, source in CASES:
                seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[bucket[-1]] * int(bucket[:-1])
                body = await _bucketed(client, start, end, bucket)
                _assert_matches(body, _expected(sets, start, end, seconds))
                if refreshed or storage_mode == "timescale":
                    # The shortest range holds no whole hour, none a whole day: raw serves it.
                    whole = source == "rollup_1m" or (
                        source == "rollup_1h" and end - start > timedelta(hours=2)
                    )
                    assert body["source"] == (source if whole else "raw"), (bucket, start)
                else:
                    assert body["source"] == "raw"


async def test_day_buckets_come_from_the_daily_rollup(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    sets: list[ReadingSet] = [(0, t, {"temperature": v}) for t, v in _days_of_readings(days=4)]
    await load(db_url, storage_mode, "dev", sets)
    await refresh_rollups(db_url, storage_mode)
    day = T0.replace(hour=0)
    for start, end in (
        (day - timedelta(days=1), day + timedelta(days=3)),
        (day - timedelta(hours=5, seconds=3), day + timedelta(days=2, hours=7)),
    ):
        body = await _bucketed(client, start, end, "1d")
        assert body["source"] == "rollup_1d"
        _assert_matches(body, _expected(sets, start, end, 86400))


def _days_of_readings(days: int) -> list[tuple[datetime, float]]:
    """A reading about every ten minutes for ``days`` days around T0."""
    rng = random.Random(3)
    t, out = T0 - timedelta(days=1, hours=3), []
    while t < T0 + timedelta(days=days - 1):
        out.append((t, rng.uniform(-10, 30)))
        t += timedelta(seconds=rng.uniform(60, 1200))
    return out


@pytest.mark.parametrize("storage_mode", ["plain"])
async def test_plain_path_mixes_rollups_before_the_watermark_with_raw_after(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    sets = _irregular(900)
    await load(db_url, storage_mode, "dev", sets)
    await refresh_rollups(db_url, storage_mode, now=T0 + timedelta(minutes=61, seconds=30))
    start, end = RANGES[0]
    for bucket, seconds in (("1m", 60), ("5m", 300), ("1h", 3600)):
        body = await _bucketed(client, start, end, bucket)
        assert body["source"] != "raw"
        _assert_matches(body, _expected(sets, start, end, seconds))


async def test_only_requested_aggregates_are_returned(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    await load(db_url, storage_mode, "dev", _irregular(50))
    r = await client.get(
        "/v1/devices/dev/readings",
        params={
            "bucket": "1h",
            "agg": "max,count",
            "start": _z(T0 - timedelta(hours=1)),
            "end": _z(T0 + timedelta(hours=3)),
        },
        headers=ADMIN,
    )
    body = await r.json()
    assert body["agg"] == ["max", "count"]
    assert {s["metric"] for s in body["series"]} == {"temperature", "humidity"}
    assert all(set(p) == {"ts", "max", "count"} for s in body["series"] for p in s["points"])


async def test_raw_range_keyset_pagination(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    sets = _irregular(300)
    await load(db_url, storage_mode, "dev", sets)
    start, end = sets[10][1], sets[250][1]
    expected = sorted(
        (m, ts, v) for _, ts, values in sets if start <= ts < end for m, v in values.items()
    )
    got: list[tuple[str, datetime, float]] = []
    cursor = None
    pages = 0
    while True:
        params = {"start": _z(start), "end": _z(end), "limit": "37"}
        if cursor:
            params["cursor"] = cursor
        r = await client.get("/v1/devices/dev/readings", params=params, headers=ADMIN)
        assert r.status == 200, await r.text()
        page = await r.json()
        assert len(page["readings"]) <= 37
        got += [
            (x["metric"], datetime.fromisoformat(x["ts"]), x["value"]) for x in page["readings"]
        ]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(got) == expected
    assert pages == math.ceil(len(expected) / 37)
    one = await (
        await client.get(
            "/v1/devices/dev/readings",
            params={"start": _z(start), "end": _z(end), "metric": "humidity"},
            headers=ADMIN,
        )
    ).json()
    assert {x["metric"] for x in one["readings"]} == {"humidity"}


@pytest.mark.parametrize("storage_mode", ["plain"])
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("start=yesterday", "start: 'yesterday' is not an RFC 3339 time"),
        ("start=1700000000", "is not an RFC 3339 time"),
        ("end=2026-13-01T00:00:00Z", "end:"),
        ("start=2026-11-21T00:00:00Z&end=2026-11-20T00:00:00Z", "must be before end"),
        ("start=2026-11-21T00:00:00Z&end=2026-11-21T00:00:00Z", "must be before end"),
        ("bucket=1m&agg=avg,median", "unknown agg 'median'; choose from avg,min,max"),
        ("bucket=2d", "bucket: 2d is not between 1s and 1d"),
        ("bucket=fast", "bucket:"),
        (
            "bucket=1s&start=2026-11-20T00:00:00Z&end=2026-11-21T00:00:00Z",
            "86400 points per series is over the limit of 10000; use bucket=10s or wider",
        ),
        (
            "bucket=1m&start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z",
            "narrow the range",
        ),
        ("limit=10001", "limit:"),
        ("metric=bad%20name", "'bad name' is not a metric name"),
        ("colour=red", "colour: unknown parameter"),
        ("limit=5&limit=6", "limit: give it once"),
        ("cursor=abc", "cursor: not a cursor"),
        ("bucket=1m&cursor=WzEsIngiXQ", "cursor: pages are for raw readings"),
        ("start=0001-01-01T00:00:00Z", "time out of range"),
    ],
)
async def test_input_errors_are_clear_400s(
    client: TestClient,  # type: ignore[type-arg]
    storage_mode: str,
    query: str,
    message: str,
) -> None:
    await client.post("/v1/devices", json={"device_id": "dev"}, headers=ADMIN)
    r = await client.get(f"/v1/devices/dev/readings?{query}", headers=ADMIN)
    assert r.status == 400
    body = await r.json()
    assert body["error"] == "bad_request"
    assert message in body["detail"]
