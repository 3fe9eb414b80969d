"""Booleans, strings and units in every answer: latest, raw, buckets, states, export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import psycopg
from aiohttp.test_utils import TestClient

from tests.api.conftest import ADMIN
from tests.ingest.helpers import T0, add_device, open_writer

MODES = [(0, "auto"), (90, "manual"), (150, "auto"), (200, "maintenance")]
SWITCHES = [(0, True), (45, False), (100, True), (200, True)]


def _z(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


async def _load(db_url: str, storage_mode: str) -> None:
    """Device p: numbers t (unit Cel), booleans on, strings mode, at the seconds above."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        key = await add_device(conn, "p")
    typed: dict[int, dict[str, bool | str]] = {}
    for second, mode in MODES:
        typed.setdefault(second, {})["mode"] = mode
    for second, on in SWITCHES:
        typed.setdefault(second, {})["on"] = on
    async with open_writer(db_url, storage_mode) as writer:
        await writer.write(
            [(key, T0 + timedelta(seconds=s), {"t": 20.0 + s}) for s in (0, 100, 200)],
            typed=[(key, T0 + timedelta(seconds=s), v) for s, v in sorted(typed.items())],
        )
        await writer.latest.flush()
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO metric_units SELECT %s, metric_key, 'Cel' FROM metrics WHERE name = 't'",
            [key],
        )
        await conn.execute(
            "UPDATE devices SET last_seen = %s WHERE device_key = %s",
            [T0 + timedelta(seconds=200), key],
        )


async def _get(client: TestClient, path: str, **params: str) -> Any:  # type: ignore[type-arg]
    response = await client.get(path, params=params, headers=ADMIN)
    assert response.status == 200, await response.text()
    if response.content_type == "application/json":
        return await response.json()
    return await response.text()


async def test_latest_and_raw_readings_keep_types_and_units(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    await _load(db_url, storage_mode)
    latest = await _get(client, "/v1/devices/p/latest")
    assert latest["values"] == [
        {"metric": "mode", "ts": _z(200), "value": "maintenance", "unit": None},
        {"metric": "on", "ts": _z(200), "value": True, "unit": None},
        {"metric": "t", "ts": _z(200), "value": 220.0, "unit": "Cel"},
    ]
    fleet = await _get(client, "/v1/latest")
    assert fleet["devices"][0]["values"] == latest["values"]
    raw = await _get(client, "/v1/devices/p/readings", start=_z(0), end=_z(300), metric="on,t")
    assert raw["units"] == {"t": "Cel"}
    # By metric (in the order metrics were first stored), then time.
    assert [(r["metric"], r["value"]) for r in raw["readings"]] == [
        ("on", True),
        ("on", False),
        ("on", True),
        ("on", True),
        ("t", 20.0),
        ("t", 120.0),
        ("t", 220.0),
    ]
    page = await _get(
        client, "/v1/devices/p/readings", start=_z(0), end=_z(300), metric="mode", limit="3"
    )
    rest = await _get(
        client,
        "/v1/devices/p/readings",
        start=_z(0),
        end=_z(300),
        metric="mode",
        cursor=page["next_cursor"],
    )
    assert [r["value"] for r in page["readings"] + rest["readings"]] == [m for _, m in MODES]


def _points(answer: Mapping[str, Any], metric: str) -> list[dict[str, Any]]:
    (series,) = [s for s in answer["series"] if s["metric"] == metric]
    return list(series["points"])


async def test_states_are_the_seconds_in_each_value_cut_exactly_at_bucket_edges(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    await _load(db_url, storage_mode)
    # From second 30 (the value then is the reading of second 0) to 270, minute buckets.
    answer = await _get(
        client,
        "/v1/devices/p/readings",
        start=_z(30),
        end=_z(270),
        bucket="1m",
        agg="count,first,last,states",
        metric="mode,on",
    )
    modes = _points(answer, "mode")
    assert [(p["ts"], p["count"], p["states"]) for p in modes] == [
        (_z(0), 0, {"auto": 30.0}),
        (_z(60), 1, {"auto": 30.0, "manual": 30.0}),
        (_z(120), 1, {"manual": 30.0, "auto": 30.0}),
        (_z(180), 1, {"auto": 20.0, "maintenance": 40.0}),
        (_z(240), 0, {"maintenance": 30.0}),
    ]
    assert [(p.get("first"), p.get("last")) for p in modes] == [
        (None, None),
        ("manual", "manual"),
        ("auto", "auto"),
        ("maintenance", "maintenance"),
        (None, None),
    ]
    switches = _points(answer, "on")
    assert [p["states"] for p in switches] == [
        {"false": 15.0, "true": 15.0},
        {"false": 40.0, "true": 20.0},
        {"true": 60.0},
        {"true": 60.0},
        {"true": 30.0},
    ]
    # Every second of the range is in exactly one state.
    for series in answer["series"]:
        assert sum(sum(p["states"].values()) for p in series["points"]) == 240.0


async def test_booleans_aggregate_as_the_share_of_true_and_strings_refuse_numbers(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    await _load(db_url, storage_mode)
    answer = await _get(
        client,
        "/v1/devices/p/readings",
        start=_z(0),
        end=_z(240),
        bucket="2m",
        agg="avg,min,max,count,sum",
    )
    by_metric = {s["metric"]: s for s in answer["series"]}
    assert (by_metric["on"]["type"], by_metric["mode"]["type"]) == ("boolean", "string")
    assert by_metric["on"]["points"] == [
        {"ts": _z(0), "avg": 2 / 3, "min": False, "max": True, "count": 3, "sum": 2.0},
        {"ts": _z(120), "avg": 1.0, "min": True, "max": True, "count": 1, "sum": 1.0},
    ]
    assert by_metric["mode"]["points"] == [
        {"ts": _z(0), "count": 2},
        {"ts": _z(120), "count": 2},
    ]
    assert (by_metric["t"]["unit"], by_metric["t"]["type"]) == ("Cel", "number")
    response = await client.get(
        "/v1/devices/p/readings",
        params={"start": _z(0), "end": _z(240), "bucket": "1m", "agg": "sum", "metric": "mode"},
        headers=ADMIN,
    )
    assert response.status == 400
    assert "string takes count,first,last,states" in (await response.json())["detail"]


async def test_export_keeps_types_and_units_in_both_formats(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    await _load(db_url, storage_mode)
    params = {"device": "p", "start": _z(0), "end": _z(300)}
    text = await _get(client, "/v1/export", **params)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["device_id", "metric", "ts", "value", "unit"]
    got = {(r[1], r[3], r[4]) for r in rows[1:]}
    assert ("t", "20", "Cel") in got
    assert ("on", "true", "") in got
    assert ("mode", "maintenance", "") in got
    assert len(rows) == 1 + 3 + len(MODES) + len(SWITCHES)
    lines = [
        json.loads(line)
        for line in (await _get(client, "/v1/export", format="ndjson", **params)).splitlines()
    ]
    values = {(line["metric"], line["ts"]): (line["value"], line["unit"]) for line in lines}
    assert values["t", _z(100).replace("Z", ".000000Z")] == (120.0, "Cel")
    assert values["on", _z(45).replace("Z", ".000000Z")] == (False, None)
    assert values["mode", _z(90).replace("Z", ".000000Z")] == ("manual", None)
