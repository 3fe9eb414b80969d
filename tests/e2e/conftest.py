"""Fixtures for end-to-end tests of the ingest service as a real process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.ingest import IngestProcess


@pytest.fixture
def ingest_factory(
    db_url: str, mqtt_url: str, tmp_path: Path
) -> Iterator[Callable[..., IngestProcess]]:
    """Start ingest services against this test's database and the session's broker."""
    started: list[IngestProcess] = []

    def start(
        *, workers: int = 1, database_url: str | None = None, **settings: str
    ) -> IngestProcess:
        proc = IngestProcess(
            database_url or db_url,
            mqtt_url,
            tmp_path / f"ingest-{len(started)}.log",
            workers=workers,
            **settings,
        )
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()
