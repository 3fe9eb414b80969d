"""Fixtures of the simulator tests: the real ingest and query API as processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from simulator.services import free_port
from tests.support.ingest import IngestProcess

ADMIN_KEY = "ak_simulator-test-admin-key-0123456789abcdefghij"


@dataclass(frozen=True)
class Platform:
    """URLs of a running ingest, query API and broker."""

    ingest_url: str
    api_url: str
    mqtt_url: str
    api_key: str


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"api exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer: {log.read_text()[-2000:]}")


@pytest.fixture
def platform(db_url: str, mqtt_url: str, tmp_path: Path) -> Iterator[Platform]:
    """The ingest (one worker) and the query API, on this test's database."""
    port = free_port()
    log = tmp_path / "api.log"
    env = os.environ | {
        "DATABASE_URL": db_url,
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "API_ADMIN_KEY": ADMIN_KEY,
        "API_RATE_PER_KEY": "100000",
        "API_BURST_PER_KEY": "100000",
    }
    with log.open("ab") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "api", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    ingest = IngestProcess(db_url, mqtt_url, tmp_path / "ingest.log")
    try:
        ingest.start()
        _wait_http(f"http://127.0.0.1:{port}/healthz", api, log)
        yield Platform(ingest.url, f"http://127.0.0.1:{port}", mqtt_url, ADMIN_KEY)
    finally:
        ingest.stop()
        api.terminate()
        try:
            api.wait(timeout=30)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait()
