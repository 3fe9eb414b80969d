"""Shared set-up for benchmarks: a server to run against and scratch databases."""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from core.registry import create_device
from ingest.migrate import migrate
from ingest.settings import StorageSettings
from simulator.services import MosquittoServer, PostgresServer
from tests.support.db import timescaledb_available


@contextmanager
def database_server() -> Iterator[str]:
    """``DATABASE_URL`` when set (a role that may create databases), else a private server."""
    given = os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        server = PostgresServer(Path(tmp), durable=True)
        with server:
            yield server.url


def storage_paths(admin_url: str, choice: str) -> list[Literal["plain", "timescale"]]:
    """The storage paths to measure: ``choice`` is plain, timescale or all (those available)."""
    paths: list[Literal["plain", "timescale"]] = []
    if choice in ("plain", "all"):
        paths.append("plain")
    if choice in ("timescale", "all") and timescaledb_available(admin_url):
        paths.append("timescale")
    return paths


def default_path(admin_url: str) -> Literal["plain", "timescale"]:
    """TimescaleDB where the server has it, else plain PostgreSQL."""
    return "timescale" if timescaledb_available(admin_url) else "plain"


@contextmanager
def scratch_database(admin_url: str, mode: Literal["plain", "timescale"]) -> Iterator[str]:
    """A migrated database that is dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(admin_url, dbname=name)
    try:
        asyncio.run(migrate(url, StorageSettings(storage_mode=mode)))
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def median(values: list[float]) -> float:
    """Median rounded for printing."""
    return round(statistics.median(values), 1)


@contextmanager
def broker() -> Iterator[str]:
    """``MQTT_URL`` when set, else a private Mosquitto with raised queue limits."""
    given = os.environ.get("MQTT_URL")
    if given:
        yield given
        return
    with (
        tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp,
        MosquittoServer(Path(tmp)) as server,
    ):
        yield server.url


def register_devices(url: str, count: int, prefix: str = "bench") -> list[str]:
    """Register ``count`` devices; return their tokens."""

    async def run() -> list[str]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return [(await create_device(conn, f"{prefix}-{i:05d}")).token for i in range(count)]

    return asyncio.run(run())


def count_rows(url: str) -> int:
    """Rows in readings."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return int(row[0]) if row else 0
