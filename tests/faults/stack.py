"""A private platform for the fault suite and the soak benchmark.

Its own PostgreSQL (behind a TCP proxy that can be cut), its own Mosquitto (with
persistence), the query API and the ingest service as real processes: the faults restart
and cut these, so they must not be the session-wide servers other tests share.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

import psycopg

from ingest.migrate import migrate
from ingest.settings import StorageSettings
from simulator.services import MosquittoServer, PostgresServer, free_port
from tests.support.ingest import IngestProcess
from tests.support.mqtt import TestClient
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


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


class ApiProcess:
    """``python -m api serve`` on a free port, its log in a file."""

    def __init__(self, database_url: str, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.env = os.environ | {
            "DATABASE_URL": database_url,
            "API_HOST": "127.0.0.1",
            "API_PORT": str(self.port),
            "API_ADMIN_KEY": ADMIN_KEY,
            "API_RATE_PER_KEY": "100000",
            "API_BURST_PER_KEY": "100000",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30) -> None:
        """Start and wait until /healthz answers."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while _get(f"{self.url}/healthz") != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the API did not come up: {tail}")
            time.sleep(0.1)

    def ready(self) -> bool:
        """Whether /readyz answers 200 (the database is reachable)."""
        return _get(f"{self.url}/readyz") == 200

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 30 s)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Stack:
    """PostgreSQL, Mosquitto, API and ingest; the ingest reaches both servers through proxies."""

    def __init__(self, workdir: Path, *, workers: int = 2, durable: bool = True) -> None:
        self.workdir = workdir
        self.workers = workers
        self.postgres = PostgresServer(workdir / "postgres", durable=durable)
        self.broker = MosquittoServer(workdir / "mosquitto")
        self.db_proxy: TcpProxy | None = None
        self.mqtt_proxy: TcpProxy | None = None
        self.api: ApiProcess | None = None
        self.ingest: IngestProcess | None = None
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
        self.api = ApiProcess(self.db_url, self.workdir / "api.log")
        self.api.start()
        self.start_ingest(workers=self.workers)
        return self

    def start_ingest(self, *, workers: int, **settings: str) -> IngestProcess:
        """Start an ingest service through both proxies (the old one must be gone)."""
        if self.ingest is not None:
            raise RuntimeError("stop the running ingest first")
        assert self.mqtt_proxy is not None
        self._ingests += 1
        ingest = IngestProcess(
            self.proxied_db_url,
            f"mqtt://127.0.0.1:{self.mqtt_proxy.port}",
            self.workdir / f"ingest-{self._ingests}.log",
            workers=workers,
            **(_INGEST_SETTINGS | settings),
        )
        ingest.start()
        self.ingest = ingest
        return ingest

    def replace_ingest(self, *, workers: int, **settings: str) -> IngestProcess:
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
