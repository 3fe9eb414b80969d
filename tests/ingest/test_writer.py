"""The batch writer on both storage paths: dedup, metrics, rollups, retention, outages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from core.retention import Retention
from ingest import maintenance
from ingest.errors import StorageDataError, StorageUnavailableError
from ingest.records import DeadLetter, DeviceUpdate
from ingest.writer import BatchWriter
from tests.e2e.helpers import wait_until
from tests.ingest.helpers import T0, add_device, fetch_all, open_writer, series
from tests.support.proxy import TcpProxy


async def test_duplicates_are_counted_not_stored(db_url: str, storage_mode: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        dev = await add_device(conn, "pump-1")
    batch = series(dev, T0, 100)
    async with open_writer(db_url, storage_mode) as writer:
        first = await writer.write(batch)
        again = await writer.write(batch)
        # Half old, half new, and one reading twice within the same batch.
        mixed = series(dev, T0 + timedelta(seconds=50), 100)
        third = await writer.write([*mixed, mixed[-1]])
    assert (first.accepted, first.duplicates, first.accepted_per_set) == (200, 0, None)
    assert (again.accepted, again.duplicates) == (0, 200)
    assert again.accepted_per_set == [0] * 100
    assert (third.accepted, third.duplicates) == (100, 102)
    assert third.accepted_per_set == [0] * 50 + [2] * 50 + [0]
    assert await fetch_all(db_url, "SELECT count(*) FROM readings") == [(300,)]


async def test_values_round_trip_exactly(db_url: str, storage_mode: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        dev = await add_device(conn, "exact")
    ts = datetime(2026, 11, 21, 8, 30, 15, 123456, tzinfo=UTC)
    async with open_writer(db_url, storage_mode) as writer:
        await writer.write([(dev, ts, {"a": 1e-300, "b": -0.0, "c": 123456789.123456789})])
    rows = await fetch_all(
        db_url,
        "SELECT m.name, r.time, r.value FROM readings r JOIN metrics m USING (metric_key)"
        " ORDER BY 1",
    )
    assert rows == [("a", ts, 1e-300), ("b", ts, -0.0), ("c", ts, 123456789.123456789)]


async def test_concurrent_writers_create_the_same_new_metrics(
    db_url: str, storage_mode: str
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        devs = [await add_device(conn, f"d{i}") for i in range(4)]
    names = tuple(f"m{i:02d}" for i in range(40))
    writers = [
        BatchWriter(db_url, mode="plain" if storage_mode == "plain" else "timescale", pool_min=1)
        for _ in devs
    ]
    for w in writers:
        await w.open()
    try:
        results = await asyncio.gather(
            *(w.write(series(d, T0, 20, metrics=names)) for w, d in zip(writers, devs, strict=True))
        )
    finally:
        for w in writers:
            await w.close()
    assert all(r.accepted == 20 * len(names) for r in results)
    assert await fetch_all(db_url, "SELECT count(*), count(DISTINCT name) FROM metrics") == [
        (40, 40)
    ]
    assert await fetch_all(db_url, "SELECT count(*) FROM readings") == [(4 * 20 * 40,)]


async def test_device_bookkeeping_and_dead_letters_commit_with_the_batch(
    db_url: str, storage_mode: str
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        dev = await add_device(conn, "bk")
    last = T0 + timedelta(seconds=9)
    letter = DeadLetter("mqtt", "schema", "values: missing", b'{"x":1}', "bk", 3)
    async with open_writer(db_url, storage_mode) as writer:
        await writer.write(
            series(dev, T0, 10),
            [DeviceUpdate(dev, last, first_seq=30, last_seq=41, seq_gaps=2)],
            [letter],
        )
        # Older time: last_seen stays. seq 45 after 41: 3 more missing.
        await writer.write((), [DeviceUpdate(dev, T0, first_seq=45, last_seq=45)])
        # A redelivered older batch neither moves last_seq back nor fakes a gap later.
        await writer.write((), [DeviceUpdate(dev, T0, first_seq=43, last_seq=44)])
        assert await fetch_all(db_url, "SELECT last_seq, seq_gaps FROM devices") == [(45, 5)]
        await writer.write((), [DeviceUpdate(dev, T0, first_seq=46, last_seq=46)])
        # A sequence starting again (device restarted) is not a gap.
        await writer.write((), [DeviceUpdate(dev, T0, first_seq=1, last_seq=2)])
        await writer.write_dead_letters([DeadLetter("http", "malformed_json", "at 1", b"{")])
    assert await fetch_all(db_url, "SELECT last_seen, last_seq, seq_gaps FROM devices") == [
        (last, 2, 5)
    ]
    assert await fetch_all(
        db_url,
        "SELECT source, device_id, item_index, reason, payload FROM dead_letters ORDER BY id",
    ) == [("mqtt", "bk", 3, "schema", b'{"x":1}'), ("http", None, None, "malformed_json", b"{")]


@pytest.mark.parametrize("table_order", ["key order", "reversed"])
async def test_writers_lock_shared_devices_in_key_order(
    db_url: str, storage_mode: str, table_order: str
) -> None:
    """Two workers' batches name the same devices: each locks them lowest key first.

    In any other order two such batches can deadlock, and PostgreSQL breaks that only after
    deadlock_timeout (a second) by failing one. Here another transaction holds the lowest
    device; a batch naming every device (listed highest first, the rows stored either way
    round) must wait for it holding none of the others.
    """
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        keys = [await add_device(conn, f"shared-{i}") for i in range(3)]
        if table_order == "reversed":  # new row versions: the table holds them high key first
            for key in reversed(keys):
                await conn.execute("UPDATE devices SET seq_gaps = 0 WHERE device_key = %s", [key])
    updates = [DeviceUpdate(key, T0, first_seq=1, last_seq=1) for key in reversed(keys)]
    async with (
        await psycopg.AsyncConnection.connect(db_url) as holder,
        await psycopg.AsyncConnection.connect(db_url) as other,
        open_writer(db_url, storage_mode) as writer,
    ):
        await holder.execute("SELECT 1 FROM devices WHERE device_key = %s FOR UPDATE", [keys[0]])
        write = asyncio.create_task(writer.write((), updates))
        await wait_until(
            lambda: fetch_all(
                db_url,
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE devices%'",
            ),
            lambda rows: rows == [(1,)],
            what="the batch waiting for the held device",
        )
        # The batch holds none of the other devices while it waits.
        await other.execute(
            "SELECT 1 FROM devices WHERE device_key = ANY(%s) FOR UPDATE NOWAIT", [keys[1:]]
        )
        await other.rollback()
        await holder.rollback()
        await write
    assert await fetch_all(db_url, "SELECT count(*) FROM devices WHERE last_seq = 1") == [(3,)]


async def test_bad_data_is_a_data_error_not_unavailability(db_url: str, storage_mode: str) -> None:
    async with open_writer(db_url, storage_mode) as writer:
        with pytest.raises(StorageDataError, match="rejected"):
            await writer.write([(1, T0, {"bad name; --": 1.0})])


async def _refresh(url: str, storage_mode: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if storage_mode == "plain":
            await maintenance.refresh_rollups(conn, datetime.now(UTC) + timedelta(days=1))
        else:
            for view in ("readings_1m", "readings_1h", "readings_1d"):
                await conn.execute(
                    "CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL)", [view]
                )


RAW = """
SELECT date_trunc({unit}, time), device_key, metric_key, count(*), sum(value), min(value),
       max(value), (array_agg(value ORDER BY time))[1], (array_agg(value ORDER BY time DESC))[1]
FROM readings GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
ROLLUP = """
SELECT bucket, device_key, metric_key, count, sum, min, max, first, last
FROM {view} ORDER BY 1, 2, 3
"""


async def _assert_rollups_match_raw(url: str) -> None:
    for unit, view in (
        ("'minute'", "readings_1m"),
        ("'hour'", "readings_1h"),
        ("'day'", "readings_1d"),
    ):
        raw = await fetch_all(url, RAW.format(unit=unit))
        rolled = await fetch_all(url, ROLLUP.format(view=view))
        assert len(rolled) == len(raw)
        for r, w in zip(rolled, raw, strict=True):
            assert r[:4] == w[:4]
            assert r[4:] == pytest.approx(w[4:], rel=1e-12)


async def test_rollups_equal_raw_aggregates_including_late_data(
    db_url: str, storage_mode: str
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        a, b = await add_device(conn, "a"), await add_device(conn, "b")
    async with open_writer(db_url, storage_mode) as writer:
        # 3 hours at one reading every 20 s, across an hour boundary, two devices.
        await writer.write(series(a, T0, 540, timedelta(seconds=20)))
        await writer.write(series(b, T0 + timedelta(minutes=30), 300, timedelta(seconds=20)))
        await _refresh(db_url, storage_mode)
        await _assert_rollups_match_raw(db_url)
        # Late rows into buckets that are already rolled up: between, before and after.
        late = [
            (a, T0 + timedelta(seconds=10 + 20 * i), {"temperature": -5.0 - i}) for i in range(30)
        ]
        late.append((b, T0 - timedelta(hours=5), {"humidity": 99.0}))
        await writer.write(late)
        await _refresh(db_url, storage_mode)
    await _assert_rollups_match_raw(db_url)


@pytest.mark.parametrize("storage_mode", ["plain"])
async def test_plain_rollup_watermark_leaves_the_current_minute_to_raw(
    db_url: str, storage_mode: str
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        dev = await add_device(conn, "w")
    now = datetime.now(UTC).replace(microsecond=0)
    async with open_writer(db_url, storage_mode) as writer:
        await writer.write(series(dev, now - timedelta(minutes=5), 5, timedelta(minutes=1)))
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        result = await maintenance.refresh_rollups(conn, now)
        again = await maintenance.refresh_rollups(conn, now)
    assert result.watermark is not None
    assert result.watermark <= now - timedelta(minutes=1)
    assert result.minutes == 4  # the minute still filling waits for the next run
    assert again.minutes == 0
    assert await fetch_all(db_url, "SELECT count(*) FROM rollup_dirty") == [(1,)]


TEN_DAYS = Retention(10, 10, 10, 10)


async def test_retention_drops_old_data(db_url: str, storage_mode: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        dev = await add_device(conn, "r")
    now = datetime.now(UTC)
    async with open_writer(db_url, storage_mode) as writer:
        await writer.write(series(dev, now - timedelta(days=20), 10))
        await writer.write(series(dev, now - timedelta(hours=1), 10))
        await writer.write_dead_letters(
            [DeadLetter("http", "schema", "", b"", received_at=now - timedelta(days=40))]
        )
    await _refresh(db_url, storage_mode)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        if storage_mode == "plain":
            result = await maintenance.apply_retention(conn, now, TEN_DAYS, 30, plain=True)
            assert maintenance.partition_name((now - timedelta(days=20)).date()) in (
                result.dropped_partitions
            )
        else:
            await conn.execute("SELECT drop_chunks('readings', older_than => interval '10 days')")
            for view in ("readings_1m", "readings_1h", "readings_1d"):
                await conn.execute(
                    "SELECT drop_chunks(%s::regclass, older_than => interval '10 days')", [view]
                )
            result = await maintenance.apply_retention(conn, now, TEN_DAYS, 30, plain=False)
        assert result.dead_letters_deleted == 1
    assert await fetch_all(db_url, "SELECT count(*) FROM readings") == [(20,)]
    old = now - timedelta(days=10)
    for view in ("readings_1m", "readings_1h", "readings_1d"):
        rows = await fetch_all(
            db_url, f"SELECT count(*) FROM {view} WHERE bucket < '{old.isoformat()}'"
        )
        assert rows == [(0,)]


def _via(url: str, proxy: TcpProxy) -> str:
    return make_conninfo(url, host="127.0.0.1", port=proxy.port)


async def test_outage_raises_storage_unavailable_and_recovers(
    db_url: str, storage_mode: str, tcp_proxy: Callable[[str, int], TcpProxy]
) -> None:
    params = conninfo_to_dict(db_url)
    proxy = tcp_proxy(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        dev = await add_device(conn, "o")
    async with open_writer(_via(db_url, proxy), storage_mode, retry_max_s=1.5) as writer:
        assert (await writer.write(series(dev, T0, 5))).accepted == 10
        proxy.stop()
        with pytest.raises(StorageUnavailableError, match="unavailable"):
            await writer.write(series(dev, T0 + timedelta(minutes=1), 5))
        proxy.start()
        assert (await writer.write(series(dev, T0 + timedelta(minutes=1), 5))).accepted == 10
    # An outage shorter than the retry budget is absorbed without an error.
    async with open_writer(_via(db_url, proxy), storage_mode, retry_max_s=20) as writer:
        proxy.stop()
        asyncio.get_running_loop().call_later(0.5, proxy.start)
        assert (await writer.write(series(dev, T0 + timedelta(minutes=2), 5))).accepted == 10
    assert await fetch_all(db_url, "SELECT count(*) FROM readings") == [(30,)]


@pytest.mark.timescale
@pytest.mark.parametrize("storage_mode", ["timescale"])
async def test_late_data_into_a_compressed_chunk_is_stored_and_deduplicated(
    db_url: str, storage_mode: str
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        dev = await add_device(conn, "c")
    old = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)
    async with open_writer(db_url, storage_mode) as writer:
        await writer.write(series(dev, old, 600))
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT count(compress_chunk(c)) FROM show_chunks('readings',"
                " older_than => now() - interval '9 days') c"
            )
            assert await cur.fetchone() == (1,)
        late = series(dev, old + timedelta(milliseconds=500), 100)  # between stored rows
        result = await writer.write([*late, *series(dev, old, 50)])
    assert (result.accepted, result.duplicates) == (200, 100)
    assert await fetch_all(
        db_url, "SELECT count(*), count(DISTINCT (metric_key, time)) FROM readings"
    ) == [(1400, 1400)]
