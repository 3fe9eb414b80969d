"""In-process ingest and API servers on a thread of their own, and a plain HTTP client.

The fuzz tests and ``benchmarks/fuzz.py`` drive them from synchronous hypothesis tests:
the server runs its own event loop on a thread, the test posts with ``http.client``.
"""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import psycopg

from api import ApiSettings
from api import create_app as create_api_app
from core.registry import create_device
from core.settings import DatabaseSettings
from ingest.settings import (
    HttpSettings,
    IntakeSettings,
    MqttSettings,
    ServeSettings,
    StorageSettings,
)
from ingest.worker import WorkerConfig, create_app
from tests.api.helpers import serve_in_thread

__all__ = ["Answer", "intake_config", "register", "request", "serve_api", "serve_intake"]

Answer = tuple[int, Any]


def intake_config(database_url: str, **http: Any) -> WorkerConfig:
    """An ingest worker without MQTT or jobs; ``http`` overrides HttpSettings fields."""
    return WorkerConfig(
        db=DatabaseSettings(database_url=database_url, db_pool_min=1, db_pool_max=4),
        storage=StorageSettings(),
        http=HttpSettings(**{"http_rate_per_device": 1e9, "http_burst_per_device": 10**9} | http),
        mqtt=MqttSettings(mqtt_url="none"),
        intake=IntakeSettings(flush_interval_s=0.005),
        serve=ServeSettings(run_jobs=False),
    )


def register(database_url: str, device_id: str) -> str:
    """Register ``device_id``; return its token."""

    async def run() -> str:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            return (await create_device(conn, device_id)).token

    return asyncio.run(run())


@contextmanager
def serve_intake(config: WorkerConfig) -> Iterator[str]:
    """Serve the ingest HTTP intake of ``config`` in process; yield its base URL."""
    with serve_in_thread(create_app(config)) as url:
        yield url


@contextmanager
def serve_api(database_url: str, admin_key: str, **settings: Any) -> Iterator[str]:
    """Serve the query API in process with ``admin_key``; yield its base URL."""
    values: dict[str, Any] = {"api_admin_key": admin_key, "api_rate_per_key": 1e9}
    api_settings = ApiSettings(**values | {"api_burst_per_key": 10**9} | settings)
    database = DatabaseSettings(database_url=database_url, db_pool_min=1, db_pool_max=4)
    with serve_in_thread(create_api_app(api_settings, database)) as url:
        yield url


def request(
    base_url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """Send one request on a new connection; return the status and the decoded JSON body."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    content_type = response.getheader("Content-Type", "")
    answer = json.loads(raw) if content_type.startswith("application/json") else raw
    return response.status, answer
