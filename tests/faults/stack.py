"""A private platform for the fault suite and the soak benchmark.

Its own PostgreSQL (behind a TCP proxy that can be cut), its own Mosquitto (with
persistence), the query API and the ingest service as real processes: the faults restart
and cut these, so they must not be the session-wide servers other tests share.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Self

import psycopg

from ingest.migrate import migrate
from ingest.settings import StorageSettings
from simulator.services import MosquittoServer, PostgresServer
from tests.support.mqtt import TestClient
from tests.support.processes import ServiceProcess, api_env, ingest_env
from tests.support.proxy import TcpProxy

ADMIN_KEY = "ak_fault-suite-admin-key-0123456789abcdefghijklmn"
DBNAME = "telemetry"

# Short outage absorption, quick reconnects: each fault is visible within seconds.
_INGEST_SETTINGS = {
    "db_retry_max_s": "2",
    "mqtt_session_expiry_s": "600",
    "http_rate_per_device": "1000",
    "http_burst_per_device": "1000",
}


class Stack:
    """PostgreSQL, Mosquitto, API and ingest; the ingest reaches both servers through proxies."""

    def __init__(self, workdir: Path, *, workers: int = 2, durable: bool = True) -> None:
        self.workdir = workdir
        self.workers = workers
        self.postgres = PostgresServer(workdir / "postgres", durable=durable)
        self.broker = MosquittoServer(workdir / "mosquitto")
        self.db_proxy: TcpProxy | None = None
        self.mqtt_proxy: TcpProxy | None = None
        self.api: ServiceProcess | None = None
        self.ingest: ServiceProcess | None = None
        self._ingests = 0

    @property
    def db_url(self) -> str:
        """The database, directly (not through the proxy)."""
        return self.postgres.url_for(DBNAME)

    @property
    def proxied_db_url(self) -> str:
        """The database through the proxy that :meth:`cut_database` cuts."""
        assert self.db_proxy is not None
        return f"postgresql://postgres@127.0.0.1:{self.db_proxy.port}/{DBNAME}"

    def start(self) -> Self:
        """Start every service, create and migrate the database."""
        self.postgres.start()
        with psycopg.connect(self.postgres.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DBNAME}".encode())
        asyncio.run(migrate(self.db_url, StorageSettings(storage_mode="plain")))
        self.broker.start()
        self.db_proxy = TcpProxy("127.0.0.1", self.postgres.port)
        self.db_proxy.start()
        self.mqtt_proxy = TcpProxy("127.0.0.1", self.broker.port)
        self.mqtt_proxy.start()
        self.api = ServiceProcess("api", api_env(self.db_url, ADMIN_KEY), self.workdir / "api.log")
        self.api.start()
        self.start_ingest(workers=self.workers)
        return self

    def start_ingest(self, *, workers: int, **settings: str) -> ServiceProcess:
        """Start an ingest service through both proxies (the old one must be gone)."""
        if self.ingest is not None:
            raise RuntimeError("stop the running ingest first")
        assert self.mqtt_proxy is not None
        self._ingests += 1
        env = ingest_env(
            self.proxied_db_url,
            f"mqtt://127.0.0.1:{self.mqtt_proxy.port}",
            **(_INGEST_SETTINGS | settings),
        )
        ingest = ServiceProcess(
            "ingest", env, self.workdir / f"ingest-{self._ingests}.log", workers=workers
        )
        ingest.start()
        self.ingest = ingest
        return ingest

    def replace_ingest(self, *, workers: int, **settings: str) -> ServiceProcess:
        """Stop the ingest, end its broker sessions, and start another with ``settings``.

        The stopped service's sessions would otherwise keep collecting their share of the
        messages for a consumer that never comes back.
        """
        old = self.ingest
        if old is not None:
            old.stop()
            self.ingest = None
            prefix = old.env["MQTT_CLIENT_ID"]
            for i in range(old.workers):
                end_session(self.broker.url, f"{prefix}-{i}")
        return self.start_ingest(workers=workers, **settings)

    def stop(self) -> None:
        """Stop everything, the ingest first."""
        if self.ingest is not None:
            self.ingest.stop()
            self.ingest = None
        if self.api is not None:
            self.api.stop()
        for proxy in (self.db_proxy, self.mqtt_proxy):
            if proxy is not None:
                proxy.stop()
        self.broker.stop()
        self.postgres.stop()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def end_session(mqtt_url: str, client_id: str) -> None:
    """Connect as ``client_id`` with a clean start and no expiry: the broker drops its session."""
    with TestClient(mqtt_url, client_id, clean_start=True, session_expiry_s=0):
        pass
