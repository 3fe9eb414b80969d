"""Command line of ``python -m ingest``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from core.errors import ConfigError, CoreError, one_line
from core.mqtt_url import parse_mqtt_url
from core.settings import DatabaseSettings, add_settings_arguments, settings_from_args
from ingest import __version__, maintenance
from ingest.errors import IngestError, MigrationError
from ingest.logs import configure_logging
from ingest.migrate import MIGRATIONS, migrate, schema_state
from ingest.settings import (
    AlertSettings,
    HttpSettings,
    IntakeSettings,
    MqttSettings,
    ServeSettings,
    StorageSettings,
)
from ingest.supervisor import Supervisor
from ingest.worker import WorkerConfig, run_worker

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

    cmd = commands.add_parser(
        "serve",
        help="run the MQTT consumer and the HTTP endpoint",
        description=(
            "Receive readings over MQTT (shared subscription) and HTTP (POST /v1/telemetry), "
            "store them exactly once and acknowledge after commit. SIGTERM or Ctrl-C stop "
            "intake, flush, acknowledge and exit 0."
        ),
    )
    cmd.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes sharing the load (default: one per core)",
    )
    cmd.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    cmd.add_argument("--handoff-socket", type=Path, default=None, help=argparse.SUPPRESS)
    add_settings_arguments(
        cmd,
        DatabaseSettings,
        HttpSettings,
        MqttSettings,
        IntakeSettings,
        StorageSettings,
        ServeSettings,
        AlertSettings,
    )
    return parser


def _worker_config(args: argparse.Namespace) -> WorkerConfig:
    config = WorkerConfig(
        db=settings_from_args(DatabaseSettings, args),
        storage=settings_from_args(StorageSettings, args),
        http=settings_from_args(HttpSettings, args),
        mqtt=settings_from_args(MqttSettings, args),
        intake=settings_from_args(IntakeSettings, args),
        serve=settings_from_args(ServeSettings, args),
        worker_index=args.worker_index or 0,
        handoff_socket=args.handoff_socket,
        alerts=settings_from_args(AlertSettings, args),
    )
    if config.alerts.alert_retry_min_s > config.alerts.alert_retry_max_s:
        raise ConfigError(
            f"ALERT_RETRY_MIN_S ({config.alerts.alert_retry_min_s:g}) must not be above"
            f" ALERT_RETRY_MAX_S ({config.alerts.alert_retry_max_s:g})"
        )
    if config.mqtt_role != "off":
        parse_mqtt_url(config.mqtt.mqtt_url)  # fail here, with one line, not in a worker
        if config.mqtt.mqtt_protocol == "3.1.1" and config.mqtt.mqtt_share_group:
            raise ConfigError(
                "MQTT_PROTOCOL=3.1.1 has no shared subscriptions: set MQTT_SHARE_GROUP empty"
                f" (now {config.mqtt.mqtt_share_group!r}) or use MQTT_PROTOCOL=5"
            )
    if bool(config.http.http_tls_cert) != bool(config.http.http_tls_key):
        raise ConfigError("HTTP_TLS_CERT and HTTP_TLS_KEY go together")
    if config.http.http_tls_cert:
        try:  # here, with one line, not in a worker that the supervisor restarts
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(config.http.http_tls_cert, config.http.http_tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load HTTP_TLS_CERT/HTTP_TLS_KEY ({config.http.http_tls_cert}): {exc}"
            ) from exc
    return config


def _serve(args: argparse.Namespace, argv: list[str]) -> int:
    config = _worker_config(args)
    if args.worker_index is None:
        if args.workers < 1:
            raise ConfigError("--workers must be at least 1")
        configure_logging(args.log_level, config.serve.log_format, "[supervisor] ")
        return Supervisor(args.workers, argv).run()
    configure_logging(args.log_level, config.serve.log_format, f"[worker {args.worker_index}] ")
    run_worker(config)
    return 0


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
            conn, now, storage.tiers, storage.dead_letter_retention_days, plain=plain
        )
        print(
            f"retention: {len(retention.dropped_partitions)} partitions dropped, "
            f"{retention.dead_letters_deleted} dead letters deleted"
        )
        if plain:
            refreshed = await maintenance.refresh_rollups(conn, now)
            print(
                f"rollups: {refreshed.minutes} minutes, {refreshed.hours} hours and"
                f" {refreshed.days} days refreshed"
            )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in ``argv`` and return the process exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(arguments)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "serve":
            return _serve(args, arguments)
        configure_logging(args.log_level)
        handler = {"migrate": _migrate, "maintain": _maintain}[args.command]
        return asyncio.run(handler(args))
    except (IngestError, CoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
