"""Shared set-up for benchmarks: a server to run against and scratch databases."""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import psycopg
from aiohttp import web
from psycopg import sql
from psycopg.conninfo import make_conninfo

from api import ApiSettings, create_app
from api.app import freeze_startup_heap
from core.registry import create_device, generate_token, hash_token
from core.settings import DatabaseSettings
from ingest import maintenance
from ingest.migrate import migrate
from ingest.settings import StorageSettings
from simulator.services import MosquittoServer, PostgresServer, free_port
from tests.support.db import timescaledb_available


class MachineLoad:
    """The machine's busy CPU time (every core, every process, the kernel's share), sampled.

    A thread reads ``/proc/stat`` every ``interval_s`` while open; :meth:`busy_seconds`
    answers for a window of wall-clock time inside that. What the processes of one side
    report leaves out the database's helper processes, the broker's and the kernel's work
    for the sockets; this counts everything that ran, and so tells whether the side had the
    whole machine busy. Linux only.
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        self._interval_s = interval_s
        self._samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="machine-load", daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> MachineLoad:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        with Path("/proc/stat").open(encoding="ascii") as stat:
            while not self._stop.is_set():
                stat.seek(0)
                # user nice system idle iowait irq softirq steal ...: busy is what ran here
                # (steal is time the hypervisor gave to others).
                user, nice, system, _idle, _iowait, irq, softirq = map(
                    int, stat.readline().split()[1:8]
                )
                self._samples.append((time.time(), user + nice + system + irq + softirq))
                self._stop.wait(self._interval_s)

    def busy_seconds(self, t0: float, t1: float) -> float:
        """CPU seconds the machine spent busy between wall-clock times ``t0`` and ``t1``."""
        inside = [(at, busy) for at, busy in self._samples if t0 <= at <= t1]
        if len(inside) < 2:
            raise RuntimeError(f"no load samples between {t0} and {t1}")
        (first_at, first), (last_at, last) = inside[0], inside[-1]
        # The samples span a little less than the window: scale their rate to all of it.
        return (last - first) / self._tick / (last_at - first_at) * (t1 - t0)


#: The admin key of the API that ``api_server`` runs.
API_KEY = "ak_benchmark-key-not-secret-0123456789abcdefghij"


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


def register_many(url: str, count: int, prefix: str = "bench") -> list[str]:
    """Register ``count`` devices in one COPY (``{prefix}-00000`` on); return their tokens.

    For fleets too large for one ``create_device`` round trip each.
    """
    tokens = [generate_token() for _ in range(count)]
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        with cur.copy("COPY devices (device_id, token_hash) FROM STDIN") as copy:
            for i, token in enumerate(tokens):
                copy.write_row((f"{prefix}-{i:05d}", hash_token(token)))
        cur.execute("ANALYZE devices")
    return tokens


async def pause_aggregate_jobs(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    """Stop TimescaleDB's own refresh jobs, which would race ``refresh_all`` (LockNotAvailable)."""
    await conn.execute(
        "SELECT alter_job(job_id, scheduled => false)"
        " FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_refresh_continuous_aggregate'"
    )


async def refresh_all(url: str, mode: Literal["plain", "timescale"], until: datetime) -> None:
    """Bring every rollup up to ``until`` on either storage path, then VACUUM ANALYZE."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if mode == "plain":
            await maintenance.refresh_rollups(conn, until + timedelta(minutes=2))
        else:
            for view in ("readings_1m", "readings_1h", "readings_1d"):
                await conn.execute(
                    "CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL)", [view]
                )
        await conn.execute("VACUUM ANALYZE")


@asynccontextmanager
async def api_server(url: str) -> AsyncIterator[str]:
    """The query API in this process on a free loopback port, keyed with ``API_KEY``."""
    app = create_app(
        ApiSettings(api_admin_key=API_KEY, api_rate_per_key=1e6, api_burst_per_key=1_000_000),
        DatabaseSettings(database_url=url, db_pool_min=2, db_pool_max=4),
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    freeze_startup_heap()  # as `python -m api serve` does
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def count_rows(url: str) -> int:
    """Rows in readings."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return int(row[0]) if row else 0
