"""The dashboards: committed JSON matches its source, models are valid, every query runs.

Every SQL target and variable query is expanded as Grafana expands it (tests/dashboards/
grafana.py) and run against a migrated database loaded through the writer, on both storage
paths, at intervals that pick each source (raw, 1-minute rollup, 1-hour rollup).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from grafana_foundation_sdk.models import prometheus
from psycopg.types.json import Jsonb

from dashboards import DASHBOARDS, DEVICE_DETAIL, FLEET_OVERVIEW, queries
from dashboards.build import filename, main, render
from ingest.metrics import METRICS
from ingest.records import DeadLetter, ReadingSet
from tests.api.helpers import refresh_rollups
from tests.dashboards.grafana import (
    BUILTIN_VARIABLES,
    MACROS,
    variable_names,
)
from tests.dashboards.runner import (
    INTERVALS,
    Grafana,
    check_dashboard,
    panels,
    read_only,
    run_sql,
)
from tests.ingest.alert_helpers import add_rule, evaluator
from tests.ingest.helpers import T0, add_device, open_writer

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "dashboards"
PROVISIONING = DASHBOARD_DIR / "provisioning"
STABLE_UIDS = {"telemetry-fleet-overview", "telemetry-device-detail", "telemetry-ingestion-health"}

GAP = (T0 + timedelta(minutes=60), T0 + timedelta(minutes=75))
TAIL_FROM = T0 + timedelta(minutes=160)


def _json_files() -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(DASHBOARD_DIR.glob("*.json"))
    }


def _datasources() -> dict[str, str]:
    text = (PROVISIONING / "datasources" / "telemetry.yaml").read_text(encoding="utf-8")
    return {d["uid"]: d["type"] for d in yaml.safe_load(text)["datasources"]}


def _walk(node: object) -> Iterator[object]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


# --- the committed files --------------------------------------------------------------


def test_committed_json_is_what_the_source_generates() -> None:
    files = render(DASHBOARDS)
    assert sorted(files) == sorted(_json_files())
    for name, text in files.items():
        assert (DASHBOARD_DIR / name).read_text(encoding="utf-8") == text, (
            f"{name} is stale: run python -m dashboards.build"
        )


def test_build_writes_and_check_catches_drift(tmp_path: Path) -> None:
    assert main(["--check", "--out", str(tmp_path)]) == 1
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--check", "--out", str(tmp_path)]) == 0
    stale = tmp_path / filename(DEVICE_DETAIL)
    stale.write_text(stale.read_text().replace("Device detail", "Device"), encoding="utf-8")
    assert main(["--check", "--out", str(tmp_path)]) == 1


def test_provisioning_files() -> None:
    assert _datasources() == {
        "telemetry-pg": "grafana-postgresql-datasource",
        "telemetry-prom": "prometheus",
    }
    text = (PROVISIONING / "datasources" / "telemetry.yaml").read_text(encoding="utf-8")
    (pg,) = (d for d in yaml.safe_load(text)["datasources"] if d["uid"] == "telemetry-pg")
    assert pg["url"] == "timescaledb:5432"
    assert pg["user"] == "grafana"
    assert pg["jsonData"]["database"] == "telemetry"
    assert pg["secureJsonData"]["password"] == "$GRAFANA_DB_PASSWORD"
    # The expansion test below runs with the macro engine in the mode provisioned here.
    assert pg["jsonData"]["timescaledb"] is False
    text = (PROVISIONING / "dashboards" / "telemetry.yaml").read_text(encoding="utf-8")
    (provider,) = yaml.safe_load(text)["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


# --- the dashboard models ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(_json_files()))
def test_dashboard_model_is_valid(name: str) -> None:
    model = _json_files()[name]
    assert model["uid"] in STABLE_UIDS
    assert name == model["uid"].removeprefix("telemetry-") + ".json"
    assert isinstance(model["schemaVersion"], int)
    assert model["schemaVersion"] >= 39
    assert model["title"]
    panels = model["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, int) and i > 0 for i in ids)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= grid.keys()
        assert grid["x"] >= 0
        assert grid["w"] > 0
        assert grid["x"] + grid["w"] <= 24
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"panel {panel['title']!r} overlaps another"
        cells |= mine
        assert panel["targets"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            if "rawSql" in target:
                assert target["format"] in ("time_series", "table")
                # Grafana 12 strips SQL comments before expanding, older versions do not.
                assert "--" not in target["rawSql"]
                assert "/*" not in target["rawSql"]
    datasources = _datasources()
    refs = [n for n in _walk(model) if isinstance(n, dict) and "uid" in n and "type" in n]
    refs = [r for r in refs if r is not model]
    assert refs
    for ref in refs:
        assert datasources.get(ref["uid"]) == ref["type"], f"unresolved datasource {ref}"
    names = [v["name"] for v in model["templating"].get("list", [])]
    assert len(names) == len(set(names))
    used = set().union(*(variable_names(s) for s in _walk(model) if isinstance(s, str)))
    unknown = used - set(names) - BUILTIN_VARIABLES - MACROS
    assert not unknown, f"variables used but not defined: {unknown}"


def test_stable_uids() -> None:
    assert {d.uid for d in DASHBOARDS} == STABLE_UIDS


def _exported_names() -> set[str]:
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    names: set[str] = set()
    for f in dataclasses.fields(METRICS):
        for family in getattr(METRICS, f.name).describe():
            names |= {family.name + s for s in suffixes[family.type]}
    return names


_PROMQL_WORDS = {"sum", "rate", "by", "le", "histogram_quantile", "without", "irate", "max"}


def _promql_metrics(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", expr)
    expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)
    words = set(re.findall(r"\b[A-Za-z_:][A-Za-z0-9_:]*\b(?!\s*\()", expr))
    return words - _PROMQL_WORDS


def test_promql_reads_metrics_that_ingest_exports() -> None:
    exported = _exported_names()
    used: set[str] = set()
    for dashboard in DASHBOARDS:
        for panel in panels(dashboard):
            for target in panel.targets or []:
                if isinstance(target, prometheus.Dataquery):
                    found = _promql_metrics(target.expr)
                    assert found, target.expr
                    used |= found
    assert used <= exported, f"not exported by ingest: {used - exported}"
    assert "ingest_commit_lag_seconds_bucket" in used
    assert "ingest_queue_rows" in used


# --- every SQL query against data, on both storage paths --------------------------------


TAGS: dict[str, dict[str, str]] = {
    "pump-1": {"site": "berlin", "room": "a"},
    "pump-2": {"site": "berlin", "room": "b"},
    "never-1": {"site": "paris"},
}


def _readings(start: datetime, end: datetime, step: timedelta, metrics: int) -> list[ReadingSet]:
    """Increasing values (so the newest readings hold the maximum); no readings in GAP.

    With more than 2 metrics also a network byte counter, reset every 700 steps.
    """
    sets: list[ReadingSet] = []
    t, i = start, 0
    while t < end:
        if not GAP[0] <= t < GAP[1]:
            values = {"temperature": 20.0 + i * 0.01, "humidity": 40.0 + i * 0.02}
            if metrics > 2:
                values |= {"latitude": 48.1 + i * 1e-6, "longitude": 11.5 - i * 1e-6}
                values["eth0_rx_bytes"] = float(i % 700 * 1500 + 7)
            sets.append((0, t, values))
        t += step
        i += 1
    return sets


async def _load(url: str, storage_mode: str) -> dict[str, list[ReadingSet]]:
    """Three devices (online, offline, never seen), dead letters, rollups refreshed but for
    the newest 20 minutes of pump-1, which only raw readings hold on plain PostgreSQL."""
    data = {
        "pump-1": _readings(T0, T0 + timedelta(hours=3), timedelta(seconds=10), 4),
        "pump-2": _readings(T0, T0 + timedelta(hours=2), timedelta(seconds=30), 2),
    }
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        keys = {d: await add_device(conn, d) for d in ("never-1", "pump-1", "pump-2")}
        for device_id, metadata in TAGS.items():
            await conn.execute(
                "UPDATE devices SET metadata = %s WHERE device_id = %s",
                [Jsonb(metadata), device_id],
            )
        await conn.execute(
            "UPDATE devices SET expected_interval_s = 10, last_seen = now() WHERE device_id = %s",
            ["pump-1"],
        )
        await conn.execute("UPDATE devices SET last_seen = %s WHERE device_id = %s", [T0, "pump-2"])
    rejects = [
        DeadLetter("http", "schema", "no values", b"{}", "pump-1", 0, T0 + timedelta(minutes=5)),
        DeadLetter("mqtt", "schema", "no values", b"{}", "pump-1", 0, T0 + timedelta(minutes=9)),
        DeadLetter("mqtt", "future_timestamp", "ahead", b"{}", "pump-2", 1, T0),
        DeadLetter("http", "malformed_json", "at 1", b"{", None, None, T0 + timedelta(hours=2)),
    ]
    sets = {d: [(keys[d], t, v) for _, t, v in s] for d, s in data.items()}
    async with open_writer(url, storage_mode) as writer:
        for device_sets in sets.values():
            await writer.write([s for s in device_sets if s[1] < TAIL_FROM])
        await writer.write_dead_letters(rejects)
    await refresh_rollups(url, storage_mode)
    async with open_writer(url, storage_mode) as writer:
        await writer.write([s for s in sets["pump-1"] if s[1] >= TAIL_FROM])
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO metric_units (device_key, metric_key, unit)"
            " SELECT %s, metric_key, '°C' FROM metrics WHERE name = 'temperature'",
            [keys["pump-1"]],
        )
    await _alerts(url, storage_mode)
    return data


async def _alerts(url: str, storage_mode: str) -> None:
    """Alerts as the evaluator leaves them: at T0+20m pump-1 is too warm (21.2 > 21) and
    pump-2 silent (last heard at T0); at T0+55m pump-2 is too warm as well (21.1)."""
    async with evaluator(url, storage_mode) as ev:
        await add_rule(ev.conn, name="Warm", metric="temperature", agg="max", window_s=60,
                       op=">", threshold=21.0)  # fmt: skip
        await add_rule(ev.conn, name="Silent", kind="offline", severity="critical")
        await ev.at(T0 + timedelta(minutes=20))
        await ev.at(T0 + timedelta(minutes=55))


@pytest.fixture
async def loaded(db_url: str, storage_mode: str) -> tuple[str, dict[str, list[ReadingSet]]]:
    return db_url, await _load(db_url, storage_mode)


async def test_every_query_runs_and_returns_its_columns(
    loaded: tuple[str, dict[str, list[ReadingSet]]], storage_mode: str
) -> None:
    url, data = loaded
    # The provisioned engine mode (plain macros) everywhere; on TimescaleDB also with
    # the datasource's TimescaleDB switch on ($__timeGroup as time_bucket).
    engines = [False, True] if storage_mode == "timescale" else [False]
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
        read_only(conn),
    ):
        for timescaledb in engines:
            grafana = Grafana(conn, timescaledb)
            fleet = await check_dashboard(grafana, FLEET_OVERVIEW, {})
            device = await check_dashboard(grafana, DEVICE_DETAIL, {"device": "pump-1"})
            for dashboard in DASHBOARDS:
                if dashboard not in (FLEET_OVERVIEW, DEVICE_DETAIL):
                    await check_dashboard(grafana, dashboard, {})
            assert grafana.values["metric"].value == (
                "eth0_rx_bytes",
                "humidity",
                "latitude",
                "longitude",
                "temperature",
            )
            assert grafana.values["resolution"].value == "20s"

    status = fleet["Devices by status", INTERVALS[0]]
    assert status == [(3, 1, 1, 1)]
    located = fleet["Device locations", INTERVALS[0]]
    assert [(r[0], r[1]) for r in located] == [("pump-1", "online")]
    silent = fleet["Devices not online", INTERVALS[0]]
    assert [(r[0], r[2]) for r in silent] == [("pump-2", "offline"), ("never-1", "never_seen")]
    assert dict(fleet["Reject reasons in range", INTERVALS[0]]) == {
        "schema": 2,
        "future_timestamp": 1,
        "malformed_json": 1,
    }
    # The newest readings of pump-1 are not rolled up on plain PostgreSQL; the raw and the
    # 1-minute views still reach them (the max of an increasing series is its last value).
    temperature = [v["temperature"] for _, _, v in data["pump-1"]]
    for interval in INTERVALS[:2]:
        rows = device["$metric", interval]  # the last copy: temperature
        assert max(r[3] for r in rows if r[3] is not None) == max(temperature)
        assert min(r[2] for r in rows if r[2] is not None) == min(temperature)
    # The gap has no bucket (Grafana fills one with NULL and breaks the line there).
    gap_buckets = [r for r in device["$metric", INTERVALS[1]] if _in_gap(r[0])]
    assert gap_buckets == []
    assert device["Status", INTERVALS[0]][0][0] == "online"
    # The axis shows the device's unit of the metric (the last copy's: temperature).
    assert device["$metric", INTERVALS[0], "unit"] == [("°C",)]
    firing = fleet["Firing alerts", INTERVALS[0]]
    assert [(r[1], r[2], r[3], r[5]) for r in firing] == [
        ("critical", "Silent", "pump-2", "no"),
        ("warning", "Warm", "pump-2", "no"),
        ("warning", "Warm", "pump-1", "no"),
    ]
    assert device["Alert events", timedelta(0)] == [
        (T0 + timedelta(minutes=20), "firing: Warm (value 21.2)", "warning,firing")
    ]
    # Rate times bucket width adds up to the counter's increase, its reset included (the
    # panel's buckets are at least $resolution, 20 s).
    counter = [v["eth0_rx_bytes"] for _, _, v in data["pump-1"]]
    increase = sum(b - a if b >= a else b for a, b in itertools.pairwise(counter))
    for interval in INTERVALS[:2]:
        rows = device["Network throughput", interval]
        assert {r[1] for r in rows} == {"eth0_rx_bytes"}
        width = max(interval, timedelta(seconds=20)).total_seconds()
        total = sum(float(r[2]) * width for r in rows if r[2] is not None)
        assert total == pytest.approx(increase, rel=1e-12), interval


def _in_gap(bucket: object) -> bool:
    start = (
        bucket if isinstance(bucket, datetime) else datetime.fromtimestamp(float(str(bucket)), UTC)
    )
    return GAP[0] <= start and start + timedelta(minutes=5) <= GAP[1]


async def test_each_source_counts_every_reading(db_url: str, storage_mode: str) -> None:
    data = await _load(db_url, storage_mode)
    await refresh_rollups(db_url, storage_mode)
    stored = sum(len(v) for sets in data.values() for _, _, v in sets)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        grafana = Grafana(conn, timescaledb=False)
        await grafana.resolve(FLEET_OVERVIEW, {})
        # The fleet-wide rate reads rollups only (its panel's min interval is 1m).
        for interval in INTERVALS[1:]:
            sql = grafana.expand(queries.READINGS_PER_SECOND, interval, grafana.values)
            _, _, rows = await run_sql(conn, sql)
            counted = sum(float(rate) * interval.total_seconds() for _, rate in rows)
            assert round(counted) == stored, interval


async def test_the_tag_panel_averages_a_metric_across_the_tag_by_group(
    db_url: str, storage_mode: str
) -> None:
    data = await _load(db_url, storage_mode)
    # The 1-hour rollup lags the newest readings until its next refresh, as for one device.
    await refresh_rollups(db_url, storage_mode)
    choose = {"tag": "site:berlin", "group_by": "room", "fleet_metric": "temperature"}
    title = "$fleet_metric by $group_by ($tag)"
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        fleet = await check_dashboard(Grafana(conn, timescaledb=False), FLEET_OVERVIEW, choose)
    for interval in INTERVALS:
        rows = fleet[title, interval]
        # Never a bucket under a minute, so never the raw rows of a whole fleet.
        seconds = max(interval, timedelta(minutes=1)).total_seconds()
        expected: dict[tuple[float, str], list[float]] = {}
        for device_id, room in (("pump-1", "a"), ("pump-2", "b")):
            for _, ts, values in data[device_id]:
                bucket = ts.timestamp() // seconds * seconds
                expected.setdefault((bucket, room), []).append(values["temperature"])
        got = {(_epoch(r[0]), r[1]): float(r[2]) for r in rows}
        assert got
        for key, avg in got.items():
            assert avg == pytest.approx(sum(expected[key]) / len(expected[key])), (interval, key)
        assert {room for _, room in got} == {"a", "b"}
        assert fleet[title, interval, "unit"] == [("°C",)]


def _epoch(bucket: object) -> float:
    return bucket.timestamp() if isinstance(bucket, datetime) else float(str(bucket))
