"""Command line of ``python -m api``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

import psycopg
from aiohttp import web

from api.app import create_app
from api.auth import create_key
from api.errors import ApiError, ConfigError
from api.settings import ApiSettings
from api.version import __version__
from ingest.errors import IngestError, one_line
from ingest.settings import DatabaseSettings, add_settings_arguments, settings_from_args

log = logging.getLogger("api")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="python -m api",
        description="Query API for devices and their readings.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    cmd = commands.add_parser(
        "serve",
        help="serve the query API over HTTP",
        description="Serve the query API (see docs/api.md). Keys: API_ADMIN_KEY or create-key.",
    )
    add_settings_arguments(cmd, ApiSettings, DatabaseSettings)

    cmd = commands.add_parser(
        "create-key",
        help="create an API key and print it (shown once)",
        description="Create an API key, store its hash and print it as the last word.",
    )
    cmd.add_argument("--scope", choices=["read", "admin"], required=True, help="what it may do")
    cmd.add_argument("--name", default="", help="a label for people (who holds the key)")
    add_settings_arguments(cmd, DatabaseSettings)
    return parser


def _serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(ApiSettings, args)
    database = settings_from_args(DatabaseSettings, args)
    app = create_app(settings, database)
    log.info("query API listening on %s:%d", settings.api_host, settings.api_port)
    try:
        web.run_app(
            app, host=settings.api_host, port=settings.api_port, print=None, access_log=None
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {settings.api_host}:{settings.api_port}: {exc.strerror}"
        ) from exc
    return 0


async def _create_key(args: argparse.Namespace) -> int:
    database = settings_from_args(DatabaseSettings, args)
    try:
        async with await psycopg.AsyncConnection.connect(
            database.database_url, autocommit=True
        ) as conn:
            key = await create_key(conn, args.scope, args.name)
    except psycopg.OperationalError as exc:
        raise ConfigError(f"cannot connect to the database: {one_line(exc)}") from exc
    except psycopg.errors.UndefinedTable as exc:
        raise ConfigError("the schema is missing: run `python -m ingest migrate` first") from exc
    print(f"created {args.scope} key (shown once, stored hashed): {key}")
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
    try:
        if args.command == "serve":
            return _serve(args)
        return asyncio.run(_create_key(args))
    except (ApiError, IngestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
