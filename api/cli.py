"""Command line of ``python -m api``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import sys
from collections.abc import Sequence

import psycopg
from aiohttp import web

from api import queries
from api.app import create_app, freeze_startup_heap
from api.auth import create_key
from api.broker import BrokerAdmin, ingest_account, simulator_account
from api.errors import ApiError, ConfigError
from api.reference import api_reference
from api.settings import ApiSettings, BrokerAccountSettings, BrokerSettings
from api.version import __version__
from core.errors import CoreError, one_line
from core.settings import DatabaseSettings, add_settings_arguments, settings_from_args

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
    add_settings_arguments(cmd, ApiSettings, DatabaseSettings, BrokerSettings)

    cmd = commands.add_parser(
        "create-key",
        help="create an API key and print it (shown once)",
        description="Create an API key, store its hash and print it as the last word.",
    )
    cmd.add_argument("--scope", choices=["read", "admin"], required=True, help="what it may do")
    cmd.add_argument("--name", default="", help="a label for people (who holds the key)")
    add_settings_arguments(cmd, DatabaseSettings)

    commands.add_parser(
        "reference",
        help="print the API reference in Markdown (docs/api-reference.md)",
        description="Render the OpenAPI document as Markdown on stdout; no database needed.",
    )

    cmd = commands.add_parser(
        "broker-setup",
        help="create the broker accounts of ingest and the simulator (idempotent)",
        description="Create or replace the ingest's (and the simulator's) account in Mosquitto's"
        " dynamic security plugin; see docs/compose.md.",
    )
    cmd.add_argument(
        "--devices",
        action="store_true",
        help="also give the broker role of every registered device (DATABASE_URL) this"
        " version's ACLs: after an upgrade, so that devices may read their commit receipts",
    )
    add_settings_arguments(cmd, BrokerSettings, BrokerAccountSettings, DatabaseSettings)
    return parser


def _serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(ApiSettings, args)
    database = settings_from_args(DatabaseSettings, args)
    ssl_context = _ssl_context(settings)
    app = create_app(settings, database, settings_from_args(BrokerSettings, args))
    scheme = "https" if ssl_context else "http"
    log.info("query API listening on %s://%s:%d", scheme, settings.api_host, settings.api_port)
    freeze_startup_heap()
    try:
        web.run_app(
            app,
            host=settings.api_host,
            port=settings.api_port,
            ssl_context=ssl_context,
            # Also closes connections that never finish their headers (slow-loris clients).
            keepalive_timeout=settings.api_read_timeout_s,
            print=None,
            access_log=None,
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {settings.api_host}:{settings.api_port}: {exc.strerror}"
        ) from exc
    return 0


def _ssl_context(settings: ApiSettings) -> ssl.SSLContext | None:
    """Build the TLS context of the server when ``API_TLS_CERT`` and ``API_TLS_KEY`` are set."""
    if bool(settings.api_tls_cert) != bool(settings.api_tls_key):
        raise ConfigError("API_TLS_CERT and API_TLS_KEY go together")
    if not settings.api_tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.api_tls_cert, settings.api_tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load API_TLS_CERT/API_TLS_KEY ({settings.api_tls_cert}): {exc}"
        ) from exc
    return context


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


async def _device_ids(database_url: str) -> list[str]:
    try:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            cur = await conn.execute(queries.ALL_DEVICE_IDS)
            return [str(device_id) for (device_id,) in await cur.fetchall()]
    except psycopg.OperationalError as exc:
        raise ConfigError(f"cannot connect to the database: {one_line(exc)}") from exc


async def _broker_setup(args: argparse.Namespace) -> int:
    broker = settings_from_args(BrokerSettings, args)
    accounts = settings_from_args(BrokerAccountSettings, args)
    if broker.api_broker_admin_url is None:
        raise ConfigError("API_BROKER_ADMIN_URL is required: mqtt://admin:password@host:1883")
    admin = BrokerAdmin(
        broker.api_broker_admin_url.get_secret_value(), timeout_s=broker.api_broker_timeout_s
    )
    wanted = [
        ingest_account(
            accounts.mqtt_ingest_username,
            accounts.mqtt_ingest_password.get_secret_value(),
            accounts.mqtt_share_group,
        )
    ]
    if accounts.mqtt_simulator_password is not None:
        wanted.append(
            simulator_account(
                accounts.mqtt_simulator_username,
                accounts.mqtt_simulator_password.get_secret_value(),
            )
        )
    for account in wanted:
        await admin.put_service(account)
    if args.devices:
        devices = await _device_ids(settings_from_args(DatabaseSettings, args).database_url)
        for device_id in devices:
            await admin.grant_device(device_id)
        print(f"{len(devices)} devices' broker roles have this version's ACLs")
        print(f"broker account {account.username!r} is ready")
    return 0


def _reference(_args: argparse.Namespace) -> int:
    sys.stdout.write(api_reference())
    return 0


_SYNC_COMMANDS = {"serve": _serve, "reference": _reference}


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
        if args.command in _SYNC_COMMANDS:
            return _SYNC_COMMANDS[args.command](args)
        if args.command == "broker-setup":
            return asyncio.run(_broker_setup(args))
        return asyncio.run(_create_key(args))
    except (ApiError, CoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
