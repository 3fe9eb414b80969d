"""HTTP intake end to end: a real ingest process, PostgreSQL and our client."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import timedelta

import aiohttp
import pytest

from tests.e2e.helpers import NOW, count_readings, new_device, post, query, readings, reasons
from tests.support.processes import ServiceProcess


async def test_accepts_dedups_and_reports_per_item(
    db_url: str, storage_mode: str, ingest_factory: Callable[..., ServiceProcess]
) -> None:
    token = await new_device(db_url, "pump-17")
    ingest = ingest_factory()
    batch = readings(50)
    batch.append({"ts": NOW.isoformat(), "values": {}})
    batch.append({"ts": (NOW + timedelta(days=1)).isoformat(), "values": {"t": 1}})
    status, body, _ = await post(ingest.url, token, batch)
    assert status == 200
    assert body["accepted"] == 100
    assert body["duplicates"] == 0
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == [
        (50, "schema"),
        (51, "future_timestamp"),
    ]
    status, body, _ = await post(ingest.url, token, batch[:50])
    assert (status, body["accepted"], body["duplicates"]) == (200, 0, 100)
    assert count_readings(db_url) == 100
    assert sorted(reasons(db_url)) == ["future_timestamp", "schema"]
    last_seq = query(db_url, "SELECT last_seq, last_seen IS NOT NULL FROM devices")
    assert last_seq == [(49, True)]


async def test_senml_and_gzip(db_url: str, ingest_factory: Callable[..., ServiceProcess]) -> None:
    token = await new_device(db_url, "env-1")
    ingest = ingest_factory()
    pack = [
        {"bn": "env-1/", "bt": NOW.timestamp(), "n": "temp", "v": 21.5},
        {"n": "door", "vb": True, "t": 1},
        {"n": "label", "vs": "hello"},
    ]
    status, body, _ = await post(ingest.url, token, pack, content_type="application/senml+json")
    assert (status, body["accepted"], body["rejected"]) == (200, 3, [])
    raw = gzip.compress(json.dumps(readings(10)).encode())
    status, body, _ = await post(
        ingest.url, token, None, raw=raw, headers={"Content-Encoding": "gzip"}
    )
    assert (status, body["accepted"]) == (200, 20)
    rows = query(
        db_url,
        "SELECT m.name, r.value FROM readings r JOIN metrics m USING (metric_key)"
        " WHERE m.name = 'temp'",
    )
    assert rows == [("temp", 21.5)]
    typed = query(
        db_url,
        "SELECT m.name, t.value_bool, t.value_text FROM readings_typed t"
        " JOIN metrics m USING (metric_key) ORDER BY 1",
    )
    assert typed == [("door", True, None), ("label", None, "hello")]


async def test_error_statuses(db_url: str, ingest_factory: Callable[..., ServiceProcess]) -> None:
    tokens = [await new_device(db_url, f"dev-{i}") for i in range(3)]
    ingest = ingest_factory(
        http_max_body_bytes="4096", http_rate_per_device="0.5", http_burst_per_device="3"
    )
    status, body, headers = await post(ingest.url, "", readings(1))
    assert (status, body["error"]) == (401, "unauthorized")
    assert headers["WWW-Authenticate"] == "Bearer"
    assert (await post(ingest.url, "dt_not-a-token", readings(1)))[0] == 401
    assert (await post(ingest.url, tokens[0], readings(1), content_type="text/plain"))[0] == 415
    status, body, _ = await post(ingest.url, tokens[0], None, raw=b"x" * 10_000)
    assert (status, body["error"]) == (413, "too_large")
    # A gzip bomb is measured after decoding.
    bomb = gzip.compress(b"[" + b" " * 1_000_000 + b"]")
    status, body, _ = await post(
        ingest.url, tokens[1], None, raw=bomb, headers={"Content-Encoding": "gzip"}
    )
    assert (status, body["error"]) == (413, "too_large")
    # Three requests make the burst; the fourth waits for the bucket to refill.
    statuses = [(await post(ingest.url, tokens[2], readings(1)))[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    status, body, headers = await post(ingest.url, tokens[2], readings(1))
    assert (status, body["error"]) == (429, "rate_limited")
    assert int(headers["Retry-After"]) >= 1


async def test_malformed_body_is_a_400_and_dead_lettered(
    db_url: str, ingest_factory: Callable[..., ServiceProcess]
) -> None:
    token = await new_device(db_url, "dev-2")
    ingest = ingest_factory()
    status, body, _ = await post(ingest.url, token, None, raw=b'{"values": ')
    assert (status, body["error"]) == (400, "malformed_json")
    status, body, _ = await post(ingest.url, token, None, raw=b"\xff\xfe")
    assert status == 400
    status, body, _ = await post(ingest.url, token, {"device_id": "other", "values": {"t": 1}})
    assert status == 200
    assert body["rejected"][0]["reason"] == "device_mismatch"
    assert query(db_url, "SELECT reason, device_id, payload FROM dead_letters ORDER BY id") == [
        ("malformed_json", "dev-2", b'{"values": '),
        ("malformed_json", "dev-2", b"\xff\xfe"),
        ("device_mismatch", "dev-2", b'{"device_id": "other", "values": {"t": 1}}'),
    ]


async def test_health_ready_and_metrics(
    db_url: str, ingest_factory: Callable[..., ServiceProcess]
) -> None:
    token = await new_device(db_url, "m-1")
    ingest = ingest_factory(workers=2)
    for _ in range(4):
        assert (await post(ingest.url, token, readings(5)))[0] == 200
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{ingest.url}/healthz") as resp:
            assert resp.status == 200
        async with session.get(f"{ingest.url}/readyz") as resp:
            ready = await resp.json()
            assert ready == {"ready": True, "checks": {"database": "ok", "mqtt": "ok"}}
        async with session.get(f"{ingest.url}/metrics") as resp:
            text = await resp.text()
    # Both workers answer for all: the accepted total is the same whoever serves /metrics.
    assert (
        "ingest_readings_accepted_total 10.0" in text
        or "ingest_readings_accepted_total 40.0" in text
    )
    assert "ingest_commit_lag_seconds_bucket" in text


@pytest.mark.parametrize("storage_mode", ["plain"])
async def test_too_old_readings_are_rejected(
    db_url: str, storage_mode: str, ingest_factory: Callable[..., ServiceProcess]
) -> None:
    token = await new_device(db_url, "old-1")
    ingest = ingest_factory(retention_days="30")
    status, body, _ = await post(
        ingest.url, token, readings(1, NOW - timedelta(days=40)) + readings(1)
    )
    assert status == 200
    assert body["accepted"] == 2
    assert body["rejected"] == [
        {"index": 0, "reason": "too_old", "detail": "ts is older than the retention of 30 days"}
    ]
