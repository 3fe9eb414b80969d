"""Fixtures for end-to-end tests of the ingest service as a real process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.processes import ServiceProcess, ingest_env


@pytest.fixture
def ingest_factory(
    db_url: str, mqtt_url: str, tmp_path: Path
) -> Iterator[Callable[..., ServiceProcess]]:
    """Start ingest services against this test's database and the session's broker."""
    started: list[ServiceProcess] = []

    def start(
        *,
        workers: int = 1,
        database_url: str | None = None,
        broker_url: str | None = None,
        **settings: str,
    ) -> ServiceProcess:
        proc = ServiceProcess(
            "ingest",
            ingest_env(database_url or db_url, broker_url or mqtt_url, **settings),
            tmp_path / f"ingest-{len(started)}.log",
            workers=workers,
        )
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()
