"""Scheduled upkeep of the storage: partitions, retention, rollups and TimescaleDB policies.

On plain PostgreSQL the ingest service runs these on a schedule (see ``ingest.jobs``):
daily partitions of ``readings`` and ``readings_typed`` are created ahead (and on demand by
the writer), expired ones are detached and dropped, and the 1-minute, 1-hour and 1-day
rollups are refreshed from the minutes the writer marked dirty. On TimescaleDB the
extension's own policies do this work; only dead-letter retention runs here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import LiteralString

from psycopg import AsyncConnection, sql
from psycopg.rows import TupleRow

from core.retention import Retention, Tier
from ingest.settings import StorageSettings

__all__ = [
    "Conn",
    "Job",
    "RefreshResult",
    "RetentionResult",
    "apply_retention",
    "apply_timescale_policies",
    "create_day_partitions",
    "ensure_partitions",
    "partition_name",
    "refresh_rollups",
]

log = logging.getLogger(__name__)

Conn = AsyncConnection[TupleRow]
#: A scheduled job: runs on an autocommit connection at ``now``.
Job = Callable[[Conn, datetime], Awaitable[None]]

_PARTITION_LOCK = 0x7E1E_0002
_ROLLUP_LOCK = 0x7E1E_0003
_MAX_REFRESH_RANGE = timedelta(hours=6)  # bounds the memory of one aggregation statement
_TIER_OF: dict[str, Tier] = {"readings_1m": "1m", "readings_1h": "1h", "readings_1d": "1d"}

#: The tables partitioned by day (readings_typed from schema version 7 on).
PARTITIONED = ("readings", "readings_typed")
_PARENTS = """
SELECT c.relname FROM pg_class c
WHERE c.relname = ANY(%s) AND c.relkind = 'p' AND c.relnamespace = current_schema()::regnamespace
ORDER BY c.relname
"""
_EXISTING_PARTITIONS = """
SELECT p.relname, c.relname FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent
WHERE p.relname = ANY(%s) AND p.relkind = 'p' AND p.relnamespace = current_schema()::regnamespace
"""

_REFRESH_1M = """
INSERT INTO readings_1m (bucket, device_key, metric_key, count, sum, min, max, first, last,
                         resets)
SELECT date_trunc('minute', time), device_key, metric_key, count(*), sum(value), min(value),
       max(value), (array_agg(value ORDER BY time))[1], (array_agg(value ORDER BY time DESC))[1],
       counter_resets(value, value, 0 ORDER BY time)
FROM readings
WHERE time >= %(lo)s AND time < %(hi)s AND date_trunc('minute', time) = ANY(%(minutes)s)
GROUP BY 1, 2, 3
"""

_REFRESH_1H = """
INSERT INTO readings_1h (bucket, device_key, metric_key, count, sum, min, max, first, last,
                         resets)
SELECT date_trunc('hour', bucket), device_key, metric_key, sum(count), sum(sum), min(min),
       max(max), (array_agg(first ORDER BY bucket))[1], (array_agg(last ORDER BY bucket DESC))[1],
       counter_resets(first, last, resets ORDER BY bucket)
FROM readings_1m
WHERE bucket >= %(lo)s AND bucket < %(hi)s AND date_trunc('hour', bucket) = ANY(%(hours)s)
GROUP BY 1, 2, 3
"""

_REFRESH_1D = """
INSERT INTO readings_1d (bucket, device_key, metric_key, count, sum, min, max, first, last,
                         resets)
SELECT date_trunc('day', bucket, 'UTC'), device_key, metric_key, sum(count), sum(sum),
       min(min), max(max), (array_agg(first ORDER BY bucket))[1],
       (array_agg(last ORDER BY bucket DESC))[1],
       counter_resets(first, last, resets ORDER BY bucket)
FROM readings_1h
WHERE bucket >= %(lo)s AND bucket < %(hi)s AND date_trunc('day', bucket, 'UTC') = ANY(%(days)s)
GROUP BY 1, 2, 3
"""


def partition_name(day: date, table: str = "readings") -> str:
    """Name of the plain-PostgreSQL partition of ``table`` holding ``day`` (UTC)."""
    return f"{table}_p{day:%Y%m%d}"


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


async def create_day_partitions(conn: AsyncConnection[TupleRow], days: Iterable[date]) -> list[str]:
    """Create the daily partitions for ``days`` that do not exist yet; return their names."""
    wanted = sorted(set(days))
    created: list[str] = []
    async with conn.transaction():
        # IF NOT EXISTS is not race-free for partitions; writers and jobs take turns instead.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", [_PARTITION_LOCK])
        parents = [
            row[0] for row in await (await conn.execute(_PARENTS, [list(PARTITIONED)])).fetchall()
        ]
        cur = await conn.execute(_EXISTING_PARTITIONS, [list(PARTITIONED)])
        existing = {row[1] for row in await cur.fetchall()}
        for parent in parents:
            for day in wanted:
                name = partition_name(day, parent)
                if name in existing:
                    continue
                await conn.execute(
                    sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                        sql.Identifier(name),
                        sql.Identifier(parent),
                        sql.Literal(_day_start(day)),
                        sql.Literal(_day_start(day + timedelta(days=1))),
                    )
                )
                created.append(name)
    if created:
        log.info("created partitions %s", ", ".join(created))
    return created


async def ensure_partitions(
    conn: AsyncConnection[TupleRow], now: datetime, ahead_days: int
) -> list[str]:
    """Create partitions from yesterday to ``ahead_days`` after ``now``."""
    today = now.astimezone(UTC).date()
    return await create_day_partitions(
        conn, (today + timedelta(days=n) for n in range(-1, ahead_days + 1))
    )


@dataclass(frozen=True)
class RetentionResult:
    """What a retention run removed."""

    dropped_partitions: tuple[str, ...]
    dead_letters_deleted: int


async def apply_retention(
    conn: AsyncConnection[TupleRow],
    now: datetime,
    retention: Retention,
    dead_letter_retention_days: int,
    *,
    plain: bool,
) -> RetentionResult:
    """Drop readings and rollups past their tier's retention (plain path), old dead letters.

    ``conn`` must be in autocommit mode: partitions are detached concurrently so that
    writers are not blocked.
    """
    cutoff = retention.horizon("raw", now)
    dropped: list[str] = []
    if plain:
        cur = await conn.execute(_EXISTING_PARTITIONS, [list(PARTITIONED)])
        for parent, name in sorted(await cur.fetchall()):
            try:
                day = datetime.strptime(name, f"{parent}_p%Y%m%d").replace(tzinfo=UTC).date()
            except ValueError:
                continue  # not one of ours: leave it alone
            if _day_start(day + timedelta(days=1)) <= cutoff:
                ident = sql.Identifier(name)
                await conn.execute(
                    sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(
                        sql.Identifier(parent), ident
                    )
                )
                await conn.execute(sql.SQL("DROP TABLE {}").format(ident))
                dropped.append(name)
        for table, tier in _TIER_OF.items():
            # Whole UTC days only: a refresh re-aggregates a day (an hour) from the finer
            # rollup, whose rows for that day must all be there or all be gone.
            horizon = retention.horizon(tier, now)
            await conn.execute(
                sql.SQL("DELETE FROM {} WHERE bucket < %s").format(sql.Identifier(table)),
                [datetime.fromtimestamp(horizon.timestamp() // 86400 * 86400, UTC)],
            )
    cur = await conn.execute(
        "DELETE FROM dead_letters WHERE received_at < %s",
        [now - timedelta(days=dead_letter_retention_days)],
    )
    if dropped:
        log.info("retention dropped partitions %s", ", ".join(dropped))
    return RetentionResult(tuple(dropped), cur.rowcount)


@dataclass(frozen=True)
class RefreshResult:
    """What a rollup refresh did: ``None`` watermark when another refresh held the lock."""

    minutes: int
    hours: int
    watermark: datetime | None
    days: int = 0


def _ranges(points: list[datetime], step: timedelta) -> list[tuple[datetime, datetime]]:
    """Group sorted bucket starts into [lo, hi) ranges of adjacent buckets."""
    ranges: list[tuple[datetime, datetime]] = []
    for point in points:
        if ranges and ranges[-1][1] == point and point - ranges[-1][0] < _MAX_REFRESH_RANGE:
            ranges[-1] = (ranges[-1][0], point + step)
        else:
            ranges.append((point, point + step))
    return ranges


async def refresh_rollups(
    conn: AsyncConnection[TupleRow], now: datetime, lag: timedelta = timedelta(minutes=1)
) -> RefreshResult:
    """Re-aggregate every dirty minute before ``now - lag``, then the hours and days around them.

    Minutes after that watermark are still filling; readers take them from raw rows.
    """
    watermark = datetime.fromtimestamp((now - lag).timestamp() // 60 * 60, UTC)
    async with conn.transaction():
        cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", [_ROLLUP_LOCK])
        locked = await cur.fetchone()
        if not locked or not locked[0]:
            return RefreshResult(0, 0, None)
        cur = await conn.execute(
            "DELETE FROM rollup_dirty WHERE minute < %s RETURNING minute", [watermark]
        )
        minutes = sorted({row[0] for row in await cur.fetchall()})
        hours = sorted({m.replace(minute=0) for m in minutes})
        days = sorted({datetime.fromtimestamp(h.timestamp() // 86400 * 86400, UTC) for h in hours})
        if minutes:
            await conn.execute("DELETE FROM readings_1m WHERE bucket = ANY(%s)", [minutes])
            for lo, hi in _ranges(minutes, timedelta(minutes=1)):
                await conn.execute(_REFRESH_1M, {"lo": lo, "hi": hi, "minutes": minutes})
            await conn.execute("DELETE FROM readings_1h WHERE bucket = ANY(%s)", [hours])
            for lo, hi in _ranges(hours, timedelta(hours=1)):
                await conn.execute(_REFRESH_1H, {"lo": lo, "hi": hi, "hours": hours})
            await conn.execute("DELETE FROM readings_1d WHERE bucket = ANY(%s)", [days])
            for lo, hi in _ranges(days, timedelta(days=1)):
                await conn.execute(_REFRESH_1D, {"lo": lo, "hi": hi, "days": days})
        await conn.execute(
            "UPDATE rollup_state SET watermark = greatest(watermark, %s) WHERE name = 'rollups'",
            [watermark],
        )
    return RefreshResult(len(minutes), len(hours), watermark, len(days))


# By continuous aggregate: bucket, end offset of the refresh window, refresh schedule. A
# day is materialized an hour after it ends; until then real-time aggregation serves it.
_HOUR = timedelta(hours=1)
_CAGG_POLICIES = {
    "readings_1m": (timedelta(minutes=1), timedelta(minutes=1), timedelta(minutes=1)),
    "readings_1h": (_HOUR, _HOUR, timedelta(minutes=15)),
    "readings_1d": (timedelta(days=1), _HOUR, _HOUR),
}


async def apply_timescale_policies(
    conn: AsyncConnection[TupleRow],
    storage: StorageSettings,
    *,
    rollups: Iterable[str],
    with_typed: bool = False,
) -> None:
    """(Re)apply chunking, compression, retention and refresh policies from ``storage``.

    ``rollups`` names the continuous aggregates that the schema has so far; ``with_typed``:
    readings_typed exists (version 7), which gets the policies (and raw retention) of readings.
    """
    tiers = storage.tiers
    raw = timedelta(days=tiers.raw_days)
    # The refresh window reaches past the compression horizon: late rows land in chunks
    # that are still uncompressed or are decompressed on insert, and are re-aggregated.
    # It stays inside raw retention where it can: a refresh of a range whose raw rows are
    # gone would empty the aggregate there, and rollups may outlive raw data.
    refresh_window = min(timedelta(days=storage.compress_after_days + 1), raw)
    statements: list[tuple[LiteralString, list[object]]] = []
    for table in ("readings", "readings_typed") if with_typed else ("readings",):
        statements += [
            (
                "SELECT set_chunk_time_interval(%s::regclass, %s::interval)",
                [table, timedelta(hours=storage.chunk_interval_hours)],
            ),
            ("SELECT remove_compression_policy(%s::regclass, if_exists => true)", [table]),
            (
                "SELECT add_compression_policy(%s::regclass, %s::interval)",
                [table, timedelta(days=storage.compress_after_days)],
            ),
            ("SELECT remove_retention_policy(%s::regclass, if_exists => true)", [table]),
            ("SELECT add_retention_policy(%s::regclass, %s::interval)", [table, raw]),
        ]
    for view in rollups:
        step, lag, every = _CAGG_POLICIES[view]
        kept = timedelta(days=tiers.days(_TIER_OF[view]))
        statements += [
            (
                ("SELECT remove_continuous_aggregate_policy(%s::regclass, if_not_exists => true)"),
                [view],
            ),
            (
                (
                    "SELECT add_continuous_aggregate_policy(%s::regclass, start_offset => %s,"
                    " end_offset => %s, schedule_interval => %s)"
                ),
                [view, max(refresh_window, 2 * step + lag), lag, every],
            ),
            ("SELECT remove_retention_policy(%s::regclass, if_exists => true)", [view]),
            ("SELECT add_retention_policy(%s::regclass, %s::interval)", [view, kept]),
        ]
    async with conn.transaction():
        for statement, params in statements:
            await conn.execute(statement, params)
