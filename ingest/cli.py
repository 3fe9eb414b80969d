"""Command line of ``python -m ingest``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import psycopg

from ingest import __version__, maintenance
from ingest.errors import IngestError, MigrationError, one_line
from ingest.migrate import MIGRATIONS, migrate, schema_state
from ingest.settings import (
    DatabaseSettings,
    StorageSettings,
    add_settings_arguments,
    settings_from_args,
)

log = logging.getLogger("ingest")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description=(
            "Ingestion server: receives readings over MQTT and HTTP and stores them exactly once."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    cmd = commands.add_parser(
        "migrate",
        help="create or upgrade the schema (idempotent)",
        description="Create or upgrade the schema and apply the storage settings. Safe to rerun.",
    )
    cmd.add_argument(
        "--target-version",
        type=int,
        default=None,
        help=f"stop at this schema version (default: newest, {MIGRATIONS[-1][0]})",
    )
    add_settings_arguments(cmd, DatabaseSettings, StorageSettings)

    cmd = commands.add_parser(
        "maintain",
        help="run the scheduled storage jobs once (partitions, retention, rollups)",
        description="Run partition upkeep, retention and the rollup refresh once, then exit.",
    )
    add_settings_arguments(cmd, DatabaseSettings, StorageSettings)
    return parser


async def _migrate(args: argparse.Namespace) -> int:
    db = settings_from_args(DatabaseSettings, args)
    storage = settings_from_args(StorageSettings, args)
    result = await migrate(db.database_url, storage, args.target_version)
    if result.applied:
        print(
            f"schema upgraded from version {result.from_version} to {result.to_version} "
            f"({result.mode} path)"
        )
    else:
        print(
            f"schema already at version {result.to_version} ({result.mode} path); settings applied"
        )
    return 0


async def _maintain(args: argparse.Namespace) -> int:
    db = settings_from_args(DatabaseSettings, args)
    storage = settings_from_args(StorageSettings, args)
    now = datetime.now(UTC)
    try:
        conn = await psycopg.AsyncConnection.connect(db.database_url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise MigrationError(f"cannot connect to the database: {one_line(exc)}") from exc
    async with conn:
        version, mode = await schema_state(conn)
        if version < MIGRATIONS[-1][0] or mode is None:
            raise MigrationError("the schema is not current: run `python -m ingest migrate` first")
        plain = mode == "plain"
        if plain:
            created = await maintenance.ensure_partitions(conn, now, storage.partitions_ahead_days)
            print(f"partitions created: {len(created)}")
        retention = await maintenance.apply_retention(
            conn, now, storage.retention_days, storage.dead_letter_retention_days, plain=plain
        )
        print(
            f"retention: {len(retention.dropped_partitions)} partitions dropped, "
            f"{retention.dead_letters_deleted} dead letters deleted"
        )
        if plain:
            refreshed = await maintenance.refresh_rollups(conn, now)
            print(f"rollups: {refreshed.minutes} minutes and {refreshed.hours} hours refreshed")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in ``argv`` and return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command is None:
        parser.print_help()
        return 2
    handler = {"migrate": _migrate, "maintain": _maintain}[args.command]
    try:
        return asyncio.run(handler(args))
    except IngestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
