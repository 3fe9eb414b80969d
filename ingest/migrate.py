"""Versioned, idempotent schema migrations.

Each version is one SQL file in ``ingest/sql``: ``NNN_name.sql`` for both storage paths, or
``NNN_name.plain.sql`` and ``NNN_name.timescale.sql`` where they differ. ``schema_version``
records what was applied; running ``migrate`` again applies only what is missing, then
re-applies the settings (retention, chunking, policies) so that changing them takes effect.
Every version missing from ``schema_version`` is applied, in order, not only those above
the newest applied: versions developed side by side (a database that has 7 and 8 gets 6
when it arrives) land wherever they were merged. Concurrent runs serialize on an advisory
lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Literal, LiteralString

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from core.errors import one_line
from ingest import maintenance
from ingest.errors import MigrationError
from ingest.settings import StorageSettings

__all__ = ["MIGRATIONS", "MigrationResult", "ResolvedMode", "migrate", "schema_state"]

_RACE_ATTEMPTS = 3  # applications of a version that lost a catalog race (_apply_version)

log = logging.getLogger(__name__)

ResolvedMode = Literal["timescale", "plain"]

#: (version, name) in order; the SQL lives in ingest/sql.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, "core"),
    (2, "readings"),
    (3, "rollups"),
    (4, "latest"),
    (5, "rollup_time_index"),
    (6, "alerts"),
    (7, "typed_values"),
    (8, "device_attributes"),
    (9, "rollup_1d"),
    (10, "counter_aggregate"),
    (11, "counter_rollups"),
    # After 11, which makes TimescaleDB's aggregates again (and so drops their indexes).
    (12, "rollup_key_index"),
    (13, "devices_hot_updates"),
    (14, "devices_metadata_statistics"),
)

#: Statements run after a version's transaction, on that path only: they cannot run in one.
_AFTER: dict[tuple[int, ResolvedMode], tuple[LiteralString, ...]] = {
    # Materialize the days stored before the 1-day aggregate existed; later days are the
    # refresh policy's.
    (9, "timescale"): (
        "CALL refresh_continuous_aggregate('readings_1d', NULL, date_trunc('day', now(), 'UTC'))",
    ),
    # The aggregates made again with counter columns: materialize what raw readings hold.
    (11, "timescale"): (
        "CALL refresh_continuous_aggregate('readings_1m', NULL, date_trunc('day', now(), 'UTC'))",
        "CALL refresh_continuous_aggregate('readings_1h', NULL, date_trunc('day', now(), 'UTC'))",
        "CALL refresh_continuous_aggregate('readings_1d', NULL, date_trunc('day', now(), 'UTC'))",
    ),
}

_LOCK_KEY = 0x7E1E_0001  # advisory lock id shared by every migrate run

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class MigrationResult:
    """What a migrate run found and did."""

    mode: ResolvedMode
    from_version: int
    to_version: int
    applied: tuple[int, ...]


def _sql_for(version: int, name: str, mode: ResolvedMode) -> str:
    folder = resources.files("ingest") / "sql"
    for candidate in (f"{version:03d}_{name}.{mode}.sql", f"{version:03d}_{name}.sql"):
        path = folder / candidate
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise MigrationError(f"no SQL for migration {version} ({name}) on the {mode} path")


async def schema_state(conn: AsyncConnection[TupleRow]) -> tuple[int, ResolvedMode | None]:
    """Return the applied schema version (0 when none) and the storage mode chosen."""
    row = await (
        await conn.execute(
            "SELECT to_regclass('schema_version') IS NOT NULL,"
            " to_regclass('storage_settings') IS NOT NULL"
        )
    ).fetchone()
    assert row is not None
    if not row[0]:
        return 0, None
    version_row = await (
        await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
    ).fetchone()
    version = int(version_row[0]) if version_row else 0
    mode: ResolvedMode | None = None
    if row[1]:
        mode_row = await (
            await conn.execute("SELECT value FROM storage_settings WHERE key = 'storage_mode'")
        ).fetchone()
        if mode_row is not None:
            mode = "timescale" if mode_row[0] == "timescale" else "plain"
    return version, mode


async def _timescaledb_usable(conn: AsyncConnection[TupleRow]) -> bool:
    row = await (
        await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),"
            " current_setting('shared_preload_libraries') LIKE '%%timescaledb%%'"
        )
    ).fetchone()
    return bool(row and row[0] and row[1])


async def _resolve_mode(
    conn: AsyncConnection[TupleRow], wanted: str, existing: ResolvedMode | None
) -> ResolvedMode:
    if existing is not None:
        if wanted not in ("auto", existing):
            raise MigrationError(
                f"the database was created for the {existing} path; it cannot be switched to "
                f"{wanted} in place (export and re-import the data instead)"
            )
        return existing
    usable = await _timescaledb_usable(conn)
    if wanted == "timescale" and not usable:
        raise MigrationError(
            "STORAGE_MODE=timescale but the TimescaleDB extension is not installed or not in "
            "shared_preload_libraries on this server"
        )
    if wanted == "plain" or not usable:
        return "plain"
    return "timescale"


async def migrate(
    conninfo: str, storage: StorageSettings, target: int | None = None
) -> MigrationResult:
    """Bring the schema to ``target`` (default: the newest) and apply the storage settings."""
    newest = MIGRATIONS[-1][0]
    target = newest if target is None else target
    if not 1 <= target <= newest:
        raise MigrationError(f"target version must be between 1 and {newest}, not {target}")
    try:
        conn = await AsyncConnection.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        raise MigrationError(f"cannot connect to the database: {one_line(exc)}") from exc
    async with conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", [_LOCK_KEY])
        try:
            return await _migrate_locked(conn, storage, target)
        except psycopg.Error as exc:
            raise MigrationError(f"migration failed: {one_line(exc)}") from exc
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])


async def _migrate_locked(
    conn: AsyncConnection[TupleRow], storage: StorageSettings, target: int
) -> MigrationResult:
    await conn.execute(_VERSION_TABLE)
    current, existing_mode = await schema_state(conn)
    cur = await conn.execute("SELECT version FROM schema_version")
    done = {int(row[0]) for row in await cur.fetchall()}
    if current > target:
        raise MigrationError(
            f"the schema is at version {current}, newer than {target}; downgrades are not supported"
        )
    mode = await _resolve_mode(conn, storage.storage_mode, existing_mode)
    if mode == "timescale":
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    # Versions are applied by what is missing, not by the newest applied: branches merged
    # later may bring versions below one that is applied already.
    done = {
        row[0]
        for row in await (await conn.execute("SELECT version FROM schema_version")).fetchall()
    }
    applied = []
    for version, name in MIGRATIONS:
        if version not in done and version <= target:
            await _apply_version(conn, version, name, mode)
            for statement in _AFTER.get((version, mode), ()):
                await conn.execute(statement)
            log.info("applied migration %03d_%s (%s path)", version, name, mode)
            applied.append(version)
    await _apply_settings(conn, mode, storage, max(current, target))
    return MigrationResult(mode, current, max(current, target), tuple(applied))


async def _apply_version(
    conn: AsyncConnection[TupleRow], version: int, name: str, mode: ResolvedMode
) -> None:
    """Apply one version in a transaction of its own, again if a catalog race undid it.

    TimescaleDB's background jobs (the rollups' refresh policies) write catalog rows that a
    version may drop or replace at the same moment; PostgreSQL then aborts the version's
    transaction with "tuple concurrently deleted" (or "updated"). Nothing of it stays, so
    it is applied again, up to :data:`_RACE_ATTEMPTS` times.
    """
    for attempt in range(1, _RACE_ATTEMPTS + 1):
        try:
            async with conn.transaction():
                await conn.execute(_sql_for(version, name, mode).encode())
                await conn.execute(
                    "INSERT INTO schema_version (version, name) VALUES (%s, %s)", [version, name]
                )
        except psycopg.errors.InternalError_ as exc:
            if "concurrently" not in str(exc) or attempt == _RACE_ATTEMPTS:
                raise
            log.warning(
                "migration %03d_%s lost a race with a database job (%s); applying it again",
                version,
                name,
                one_line(exc),
            )
        else:
            return


async def _apply_settings(
    conn: AsyncConnection[TupleRow], mode: ResolvedMode, storage: StorageSettings, version: int
) -> None:
    settings = {
        "storage_mode": mode,
        "retention_days": str(storage.tiers.raw_days),
        **storage.tiers.as_settings(),
        "partitions_ahead_days": str(storage.partitions_ahead_days),
        "dead_letter_retention_days": str(storage.dead_letter_retention_days),
    }
    async with conn.transaction():
        for key, value in settings.items():
            await conn.execute(
                "INSERT INTO storage_settings (key, value) VALUES (%s, %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
    if version < 2:
        return
    if mode == "plain":
        await maintenance.ensure_partitions(
            conn, datetime.now(UTC), ahead_days=storage.partitions_ahead_days
        )
        return
    rollups: tuple[str, ...] = ("readings_1m", "readings_1h") if version >= 3 else ()
    if version >= 9:
        rollups += ("readings_1d",)
    await maintenance.apply_timescale_policies(
        conn, storage, rollups=rollups, with_typed=version >= 7
    )
