"""Fixtures of the simulator tests: the real ingest and query API as processes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import ServiceProcess, api_env, ingest_env

ADMIN_KEY = "ak_simulator-test-admin-key-0123456789abcdefghij"


@dataclass(frozen=True)
class Platform:
    """URLs of a running ingest, query API and broker."""

    ingest_url: str
    api_url: str
    mqtt_url: str
    api_key: str


@pytest.fixture
def platform(db_url: str, mqtt_url: str, tmp_path: Path) -> Iterator[Platform]:
    """The ingest (one worker) and the query API, on this test's database."""
    ingest = ServiceProcess("ingest", ingest_env(db_url, mqtt_url), tmp_path / "ingest.log")
    api = ServiceProcess("api", api_env(db_url, ADMIN_KEY), tmp_path / "api.log")
    with ingest, api:
        yield Platform(ingest.url, api.url, mqtt_url, ADMIN_KEY)
