"""Schema migrations on both storage paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ingest import maintenance, statements
from ingest import migrate as migrate_module
from ingest.errors import MigrationError
from ingest.migrate import MIGRATIONS, ResolvedMode, migrate
from ingest.settings import StorageSettings
from tests.ingest.helpers import T0, fetch_all, mode_of, open_writer
from tests.support.db import DatabaseServer

DAY = timedelta(days=1)
TABLES = {"devices", "metrics", "readings", "dead_letters", "api_keys", "storage_settings"}


async def test_migrate_creates_schema_and_is_idempotent(
    empty_db_url: str, storage_mode: str
) -> None:
    settings = StorageSettings(storage_mode=mode_of(storage_mode))
    first = await migrate(empty_db_url, settings)
    assert first.applied == tuple(v for v, _ in MIGRATIONS)
    assert first.mode == storage_mode
    second = await migrate(empty_db_url, settings)
    assert second.applied == ()
    assert second.to_version == MIGRATIONS[-1][0]
    rows = await fetch_all(
        empty_db_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    )
    assert {r[0] for r in rows} >= TABLES
    versions = await fetch_all(empty_db_url, "SELECT version FROM schema_version ORDER BY 1")
    assert [v[0] for v in versions] == [v for v, _ in MIGRATIONS]


async def test_upgrade_from_version_2_rolls_up_existing_rows(
    empty_db_url: str, storage_mode: str
) -> None:
    settings = StorageSettings(storage_mode=mode_of(storage_mode))
    previous = 2  # the last version without rollups
    await migrate(empty_db_url, settings, target=previous)
    async with await psycopg.AsyncConnection.connect(empty_db_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO devices (device_id) VALUES ('old-1')")
        await conn.execute("INSERT INTO metrics (name) VALUES ('t')")
        if storage_mode == "plain":
            await maintenance.create_day_partitions(conn, [T0.date()])
        await conn.execute(
            "INSERT INTO readings SELECT %s + make_interval(secs => g), 1, 1, g"
            " FROM generate_series(0, 119) g",
            [T0],
        )
    result = await migrate(empty_db_url, settings)
    assert result.from_version == previous
    assert result.applied == tuple(v for v, _ in MIGRATIONS if v > previous)
    async with await psycopg.AsyncConnection.connect(empty_db_url, autocommit=True) as conn:
        if storage_mode == "plain":
            await maintenance.refresh_rollups(conn, datetime.now(UTC))
        else:
            await conn.execute("CALL refresh_continuous_aggregate('readings_1m', NULL, NULL)")
    rows = await fetch_all(
        empty_db_url, "SELECT count, sum, first, last FROM readings_1m ORDER BY bucket"
    )
    assert rows == [
        (60, float(sum(range(60))), 0.0, 59.0),
        (60, float(sum(range(60, 120))), 60.0, 119.0),
    ]


async def test_upgrade_from_previous_version_seeds_latest_readings(
    empty_db_url: str, storage_mode: str
) -> None:
    settings = StorageSettings(storage_mode=mode_of(storage_mode))
    latest = {name: v for v, name in MIGRATIONS}["latest"]
    await migrate(empty_db_url, settings, target=latest - 1)
    async with await psycopg.AsyncConnection.connect(empty_db_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO devices (device_id) VALUES ('old-1'), ('old-2')")
        await conn.execute("INSERT INTO metrics (name) VALUES ('t'), ('h')")
        if storage_mode == "plain":
            await maintenance.create_day_partitions(
                conn, [T0.date() - timedelta(days=1), T0.date()]
            )
        # Two days of rows for three keys (device 2 never reported h), newest not last in.
        await conn.execute(
            "INSERT INTO readings SELECT %s - make_interval(secs => g * 600), d, m, d * 1000 + g"
            " FROM generate_series(0, 200) g, (VALUES (1, 1), (1, 2), (2, 1)) k(d, m)"
            " ORDER BY random()",
            [T0],
        )
    result = await migrate(empty_db_url, settings)
    assert result.applied == tuple(v for v, _ in MIGRATIONS if v >= latest)
    rows = await fetch_all(
        empty_db_url,
        "SELECT device_key, metric_key, time, value FROM latest_readings ORDER BY 1, 2",
    )
    assert rows == [(1, 1, T0, 1000.0), (1, 2, T0, 1000.0), (2, 1, T0, 2000.0)]


async def test_upgrade_to_the_daily_rollup_rolls_up_the_days_stored(
    empty_db_url: str, storage_mode: str
) -> None:
    settings = StorageSettings(storage_mode=mode_of(storage_mode))
    daily = {name: v for v, name in MIGRATIONS}["rollup_1d"]
    await migrate(empty_db_url, settings, target=daily - 1)
    day = T0.replace(hour=0)
    async with await psycopg.AsyncConnection.connect(empty_db_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO devices (device_id) VALUES ('old-1')")
        await conn.execute("INSERT INTO metrics (name) VALUES ('t')")
        if storage_mode == "plain":
            await maintenance.create_day_partitions(conn, [day.date(), (day + DAY).date()])
        # Two days, a reading every 10 minutes, valued by its index.
        await conn.execute(
            "INSERT INTO readings SELECT %s + make_interval(secs => g * 600), 1, 1, g"
            " FROM generate_series(0, 287) g",
            [day],
        )
        if storage_mode == "plain":  # the hours as the previous version rolled them up
            await conn.execute(
                "INSERT INTO readings_1h SELECT date_trunc('hour', time), device_key,"
                " metric_key, count(*), sum(value), min(value), max(value), min(value),"
                " max(value) FROM readings GROUP BY 1, 2, 3"  # values rise: first is min
            )
    await migrate(empty_db_url, settings)
    rows = await fetch_all(
        empty_db_url, "SELECT bucket, count, sum, min, max, first, last FROM readings_1d ORDER BY 1"
    )
    assert rows == [
        (day, 144, float(sum(range(144))), 0.0, 143.0, 0.0, 143.0),
        (day + DAY, 144, float(sum(range(144, 288))), 144.0, 287.0, 144.0, 287.0),
    ]


_OLD_ROLLUP = """
INSERT INTO {view} SELECT date_trunc({unit}, time, 'UTC'), device_key, metric_key, count(*),
       sum(value), min(value), max(value), (array_agg(value ORDER BY time))[1],
       (array_agg(value ORDER BY time DESC))[1]
FROM readings GROUP BY 1, 2, 3
"""


async def test_upgrade_to_counter_rollups_finds_the_resets_of_stored_readings(
    empty_db_url: str, storage_mode: str
) -> None:
    settings = StorageSettings(storage_mode=mode_of(storage_mode))
    counters = {name: v for v, name in MIGRATIONS}["counter_rollups"]
    await migrate(empty_db_url, settings, target=counters - 1)
    async with await psycopg.AsyncConnection.connect(empty_db_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO devices (device_id) VALUES ('old-1')")
        await conn.execute("INSERT INTO metrics (name) VALUES ('rx_bytes')")
        if storage_mode == "plain":
            await maintenance.create_day_partitions(conn, [T0.date()])
        # Resets after 150 (minute 0) and after 80 (minute 1).
        await conn.execute(
            "INSERT INTO readings SELECT %s + make_interval(secs => s), 1, 1, v"
            " FROM (VALUES (0, 100), (20, 150), (40, 30), (59, 50), (70, 80), (100, 10),"
            " (119, 25)) r(s, v)",
            [T0],
        )
        if storage_mode == "plain":  # the rollups as the previous version made them
            for view, unit in (("1m", "minute"), ("1h", "hour"), ("1d", "day")):
                old = _OLD_ROLLUP.format(view=f"readings_{view}", unit=f"'{unit}'")
                await conn.execute(old.encode())
    await migrate(empty_db_url, settings)
    for view, expected in (
        ("readings_1m", [(T0, 150.0), (T0 + timedelta(minutes=1), 80.0)]),
        ("readings_1h", [(T0, 230.0)]),
        ("readings_1d", [(T0.replace(hour=0), 230.0)]),
    ):
        rows = await fetch_all(empty_db_url, f"SELECT bucket, resets FROM {view} ORDER BY 1")
        assert rows == expected, view


@pytest.mark.timescale
async def test_storage_path_cannot_be_switched(empty_db_url: str) -> None:
    await migrate(empty_db_url, StorageSettings(storage_mode="plain"))
    with pytest.raises(MigrationError, match="cannot be switched"):
        await migrate(empty_db_url, StorageSettings(storage_mode="timescale"))


async def test_timescale_requested_where_absent_is_a_clear_error(
    empty_db_url: str, pg_server: DatabaseServer
) -> None:
    if pg_server.timescaledb:
        pytest.skip("TimescaleDB is installed here, so the request would succeed")
    with pytest.raises(MigrationError, match="not installed"):
        await migrate(empty_db_url, StorageSettings(storage_mode="timescale"))


async def test_migrate_reports_an_unreachable_database() -> None:
    with pytest.raises(MigrationError, match="cannot connect"):
        await migrate("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", StorageSettings())


@pytest.mark.timescale
async def test_timescale_policies_follow_the_settings(empty_db_url: str) -> None:
    db_url = empty_db_url
    await migrate(db_url, StorageSettings(storage_mode="timescale"))
    await migrate(db_url, StorageSettings(retention_days=90, compress_after_days=3))
    rows = await fetch_all(
        db_url,
        "SELECT hypertable_name, proc_name, config->>'drop_after', config->>'compress_after'"
        " FROM timescaledb_information.jobs WHERE hypertable_name = 'readings' ORDER BY 2",
    )
    assert ("readings", "policy_compression", None, "3 days") in rows
    assert ("readings", "policy_retention", "90 days", None) in rows
    caggs = await fetch_all(
        db_url,
        "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
        " ORDER BY 1",
    )
    assert caggs == [("readings_1d", False), ("readings_1h", False), ("readings_1m", False)]


async def test_upgrade_from_version_5_keeps_the_data_and_types_it_as_numbers(
    empty_db_url: str, storage_mode: str
) -> None:
    settings = StorageSettings(storage_mode=mode_of(storage_mode))
    previous = 5  # the schema before typed values and device attributes
    await migrate(empty_db_url, settings, target=previous)
    async with await psycopg.AsyncConnection.connect(empty_db_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO devices (device_id, metadata)"
            " VALUES ('old-1', '{\"site\": \"berlin\"}'), ('old-2', '{}')"
        )
        await conn.execute("INSERT INTO metrics (name) VALUES ('t'), ('running')")
        if storage_mode == "plain":
            await maintenance.create_day_partitions(conn, [T0.date()])
        await conn.execute(
            "INSERT INTO readings SELECT %s + make_interval(secs => g), d, m, g"
            " FROM generate_series(0, 59) g, (VALUES (1, 1), (1, 2), (2, 1)) k(d, m)",
            [T0],
        )
        await conn.execute(
            "INSERT INTO latest_readings SELECT DISTINCT ON (device_key, metric_key)"
            " device_key, metric_key, time, value FROM readings"
            " ORDER BY device_key, metric_key, time DESC"
        )
    result = await migrate(empty_db_url, settings)
    assert result.applied == tuple(v for v, _ in MIGRATIONS if v > previous)
    assert await fetch_all(empty_db_url, "SELECT count(*) FROM readings") == [(180,)]
    assert await fetch_all(empty_db_url, "SELECT DISTINCT value_type FROM metrics") == [("number",)]
    latest = await fetch_all(
        empty_db_url,
        "SELECT device_key, metric_key, value, value_bool, value_text FROM latest_readings"
        " ORDER BY 1, 2",
    )
    assert latest == [(1, 1, 59.0, None, None), (1, 2, 59.0, None, None), (2, 1, 59.0, None, None)]
    devices = await fetch_all(
        empty_db_url,
        "SELECT device_id, metadata, attributes, gateway, gateway_key FROM devices ORDER BY 1",
    )
    assert devices == [
        ("old-1", {"site": "berlin"}, {}, False, None),
        ("old-2", {}, {}, False, None),
    ]
    # The upgraded schema takes the new kinds of data next to the old.
    async with open_writer(empty_db_url, storage_mode) as writer:
        result_write = await writer.write(
            [(1, T0 + timedelta(minutes=5), {"t": 1.5})],
            typed=[(1, T0 + timedelta(minutes=5), {"mode": "auto", "on": True})],
        )
    assert (result_write.accepted, result_write.duplicates) == (3, 0)
    tagged = await fetch_all(
        empty_db_url, 'SELECT device_id FROM devices WHERE metadata @> \'{"site": "berlin"}\''
    )
    assert tagged == [("old-1",)]


async def test_device_bookkeeping_updates_stay_in_their_pages(
    db_url: str, storage_mode: str
) -> None:
    """Rows of devices keep room for a new version (HOT: no index touched), from version 13.

    A thousand devices registered one after the other fill their pages; the bookkeeping of a
    batch that names a device in each page must find room in that page for every one.
    """
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        await conn.execute(
            "INSERT INTO devices (device_id, metadata)"
            " SELECT 'hot-' || i, jsonb_build_object('site', 'berlin', 'n', i)"
            " FROM generate_series(1, 1000) AS i"
        )
        await conn.commit()
        cur = await conn.execute(
            "SELECT device_key FROM devices WHERE device_id LIKE 'hot-%%' ORDER BY device_key"
        )
        keys = [row[0] for row in await cur.fetchall()][::50]
        await conn.execute(
            statements.UPDATE_DEVICES,
            [keys, [T0] * len(keys), [1] * len(keys), [1] * len(keys), [0] * len(keys)],
        )
        cur = await conn.execute(
            "SELECT pg_stat_get_xact_tuples_updated('devices'::regclass),"
            " pg_stat_get_xact_tuples_hot_updated('devices'::regclass)"
        )
        assert await cur.fetchone() == (len(keys), len(keys))
    indexes = await fetch_all(
        db_url,
        "SELECT count(*) FROM pg_indexes WHERE tablename = 'devices' AND indexdef LIKE '%gin%'",
    )
    assert indexes == [(1,)]  # one index on metadata, not two


_CATALOG_RACE = (
    "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'XX000',"
    " MESSAGE = 'tuple concurrently deleted'; END $$"
)


@pytest.mark.parametrize(("races", "applied"), [(2, True), (3, False)])
async def test_a_version_that_loses_a_catalog_race_is_applied_again(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch, races: int, applied: bool
) -> None:
    """A TimescaleDB job may race a version's DDL; the version's transaction is retried."""
    newest = MIGRATIONS[-1][0]
    settings = StorageSettings(storage_mode="plain")
    await migrate(empty_db_url, settings, target=newest - 1)
    real_sql = migrate_module._sql_for
    calls: list[int] = []

    def racing_sql(version: int, name: str, mode: ResolvedMode) -> str:
        if version == newest:
            calls.append(version)
            if len(calls) <= races:
                return _CATALOG_RACE
        return real_sql(version, name, mode)

    monkeypatch.setattr(migrate_module, "_sql_for", racing_sql)
    if applied:
        result = await migrate(empty_db_url, settings)
        assert result.applied == (newest,)
        assert len(calls) == races + 1
    else:
        with pytest.raises(MigrationError, match="concurrently deleted"):
            await migrate(empty_db_url, settings)
        assert len(calls) == races
    versions = await fetch_all(empty_db_url, "SELECT max(version) FROM schema_version")
    assert versions[0][0] == (newest if applied else newest - 1)
