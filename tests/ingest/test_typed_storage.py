"""readings_typed on both storage paths: dedup in a batch, retention, TimescaleDB policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from core.retention import Retention
from ingest import maintenance
from ingest.migrate import migrate
from ingest.records import TypedSet
from ingest.settings import StorageSettings
from tests.ingest.helpers import T0, add_device, fetch_all, open_writer


async def test_typed_rows_count_per_set_like_numbers(db_url: str, storage_mode: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        dev = await add_device(conn, "p")
    typed: list[TypedSet] = [
        (dev, T0, {"on": True, "mode": "auto"}),
        (dev, T0 + timedelta(seconds=1), {"on": False}),
    ]
    async with open_writer(db_url, storage_mode) as writer:
        first = await writer.write([(dev, T0, {"t": 1.0})], typed=typed)
        # One set again, one new, and a key twice in the same batch.
        again = typed[1:] + [(dev, T0 + timedelta(seconds=2), {"on": True})] * 2
        second = await writer.write([], typed=again)
    assert (first.accepted, first.duplicates, first.typed_per_set) == (4, 0, None)
    assert (second.accepted, second.duplicates, second.typed_per_set) == (1, 2, [0, 1, 0])
    assert await fetch_all(db_url, "SELECT count(*) FROM readings_typed") == [(4,)]


async def test_retention_drops_old_typed_rows(db_url: str, storage_mode: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        dev = await add_device(conn, "r")
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=20), now - timedelta(hours=1)
    async with open_writer(db_url, storage_mode) as writer:
        await writer.write([], typed=[(dev, old, {"mode": "a"}), (dev, recent, {"mode": "b"})])
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        if storage_mode == "plain":
            result = await maintenance.apply_retention(
                conn, now, Retention(10, 10, 10, 10), 30, plain=True
            )
            assert maintenance.partition_name(old.date(), "readings_typed") in (
                result.dropped_partitions
            )
            assert maintenance.partition_name(old.date()) in result.dropped_partitions
        else:
            await conn.execute(
                "SELECT drop_chunks('readings_typed', older_than => interval '10 days')"
            )
    assert await fetch_all(db_url, "SELECT value_text FROM readings_typed") == [("b",)]


@pytest.mark.timescale
async def test_typed_rows_get_the_policies_of_numbers(empty_db_url: str) -> None:
    await migrate(empty_db_url, StorageSettings(storage_mode="timescale"))
    await migrate(empty_db_url, StorageSettings(retention_days=90, compress_after_days=3))
    rows = await fetch_all(
        empty_db_url,
        "SELECT proc_name, config->>'drop_after', config->>'compress_after'"
        " FROM timescaledb_information.jobs WHERE hypertable_name = 'readings_typed' ORDER BY 1",
    )
    assert rows == [("policy_compression", None, "3 days"), ("policy_retention", "90 days", None)]
    settings = await fetch_all(
        empty_db_url,
        "SELECT attname, segmentby_column_index, orderby_column_index"
        " FROM timescaledb_information.compression_settings"
        " WHERE hypertable_name = 'readings_typed' ORDER BY 1",
    )
    assert ("device_key", 1, None) in settings


@pytest.mark.timescale
@pytest.mark.parametrize("storage_mode", ["timescale"])
async def test_late_typed_rows_into_a_compressed_chunk_are_deduplicated(
    db_url: str, storage_mode: str
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        dev = await add_device(conn, "late")
    when = datetime.now(UTC) - timedelta(days=5)
    async with open_writer(db_url, storage_mode) as writer:
        await writer.write([], typed=[(dev, when, {"mode": "auto"})])
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await conn.execute("SELECT compress_chunk(c) FROM show_chunks('readings_typed') c")
        again = await writer.write(
            [],
            typed=[
                (dev, when, {"mode": "auto"}),
                (dev, when + timedelta(seconds=1), {"mode": "x"}),
            ],
        )
    assert (again.accepted, again.duplicates) == (1, 1)
    assert await fetch_all(db_url, "SELECT count(*) FROM readings_typed") == [(2,)]
