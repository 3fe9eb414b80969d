"""Real services for the test suite.

A private PostgreSQL and a private Mosquitto start once per session on free loopback
ports (``TEST_DATABASE_URL`` / ``TEST_MQTT_URL`` use existing ones instead); each test
that asks for a database gets a fresh one, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ingest.migrate import migrate
from ingest.settings import StorageSettings
from simulator.services import MosquittoServer, PostgresServer
from tests.support.db import DatabaseServer, timescaledb_available
from tests.support.mqtt import clear_retained
from tests.support.proxy import TcpProxy


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseServer]:
    """The PostgreSQL server of this session."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield DatabaseServer(given, timescaledb_available(given))
        return
    server = PostgresServer(tmp_path_factory.mktemp("postgres"), durable=False)
    with server:
        yield DatabaseServer(server.url, timescaledb_available(server.url))


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer | None]:
    """The private broker of this session, or None when ``TEST_MQTT_URL`` names one."""
    if os.environ.get("TEST_MQTT_URL"):
        yield None
        return
    with MosquittoServer(tmp_path_factory.mktemp("mosquitto")) as server:
        yield server


@pytest.fixture(scope="session")
def mqtt_url(mosquitto: MosquittoServer | None) -> str:
    """``mqtt://`` URL of the broker under test."""
    return mosquitto.url if mosquitto is not None else os.environ["TEST_MQTT_URL"]


@pytest.fixture(autouse=True)
def _no_retained_reports_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used the broker, delete the attribute reports it left retained."""
    yield
    if "mqtt_url" in request.fixturenames:
        clear_retained(request.getfixturevalue("mqtt_url"))


@pytest.fixture(autouse=True)
def _skip_without_timescaledb(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("timescale") is None:
        return
    server: DatabaseServer = request.getfixturevalue("pg_server")
    if not server.timescaledb:
        pytest.skip(
            "TimescaleDB is not installed (or not in shared_preload_libraries) on the test "
            "PostgreSQL server; the plain-PostgreSQL path is tested instead"
        )


@pytest.fixture
def empty_db_url(pg_server: DatabaseServer) -> Iterator[str]:
    """A new, empty database for this test only."""
    name = pg_server.create_database()
    yield pg_server.url_for(name)
    pg_server.drop_database(name)


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[str, int], TcpProxy]]:
    """Factory of started TCP proxies (``stop()`` cuts, ``start()`` restores)."""
    proxies: list[TcpProxy] = []

    def make(host: str, port: int) -> TcpProxy:
        proxy = TcpProxy(host, port)
        proxy.start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A scratch directory for this test (alias kept short for readability)."""
    return tmp_path


class _Templates:
    """Migrated template databases, one per storage path, made on first use."""

    def __init__(self, server: DatabaseServer) -> None:
        self.server = server
        self._names: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, mode: str) -> str:
        with self._lock:
            if mode not in self._names:
                name = self.server.create_database()
                settings = StorageSettings(storage_mode="plain" if mode == "plain" else "timescale")
                asyncio.run(migrate(self.server.url_for(name), settings))
                # No connections allowed: TimescaleDB's scheduler would otherwise hold one
                # and CREATE DATABASE ... TEMPLATE refuses a template in use.
                with psycopg.connect(self.server.admin_url, autocommit=True) as conn:
                    conn.execute(
                        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                            sql.Identifier(name)
                        )
                    )
                    conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = %s AND pid <> pg_backend_pid()",
                        [name],
                    )
                self._names[mode] = name
            return self._names[mode]


@pytest.fixture(scope="session")
def migrated_templates(pg_server: DatabaseServer) -> _Templates:
    """Factory of migrated template databases per storage path."""
    return _Templates(pg_server)


@pytest.fixture(params=["plain", pytest.param("timescale", marks=pytest.mark.timescale)])
def storage_mode(request: pytest.FixtureRequest) -> str:
    """Each storage path in turn; timescale is skipped where the extension is absent."""
    mode: str = request.param
    return mode


@pytest.fixture
def db_url(
    pg_server: DatabaseServer, migrated_templates: _Templates, storage_mode: str
) -> Iterator[str]:
    """A fresh database with the current schema on the path of ``storage_mode``."""
    name = pg_server.create_database(template=migrated_templates.get(storage_mode))
    yield pg_server.url_for(name)
    pg_server.drop_database(name)
