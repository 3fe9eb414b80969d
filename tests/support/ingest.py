"""Run ``python -m ingest serve`` as a real process for end-to-end and fault tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Self

from simulator.services import free_port


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


class IngestProcess:
    """The ingest service with its own share group and client ids, on a free port."""

    def __init__(
        self,
        database_url: str,
        mqtt_url: str,
        log_path: Path,
        *,
        workers: int = 1,
        **settings: str,
    ) -> None:
        self.port = free_port()
        self.workers = workers
        self.log_path = log_path
        tag = uuid.uuid4().hex[:8]
        self.env = (
            os.environ
            | {
                "DATABASE_URL": database_url,
                "MQTT_URL": mqtt_url,
                "INGEST_HTTP_PORT": str(self.port),
                "MQTT_SHARE_GROUP": f"g{tag}",
                "MQTT_CLIENT_ID": f"ingest-{tag}",
                "MQTT_SESSION_EXPIRY_S": "300",
                "FLUSH_INTERVAL_S": "0.02",
                "DB_RETRY_MAX_S": "2",
                "ROLLUP_REFRESH_INTERVAL_S": "3600",
            }
            | {k.upper(): v for k, v in settings.items()}
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP endpoint."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30) -> Self:
        """Start and wait until /readyz answers 200."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest", "serve", "--workers", str(self.workers)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 30) -> dict[str, object]:
        """Wait for /readyz to answer 200 and every worker to be up."""
        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"ingest exited {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as resp:
                    body: dict[str, object] = json.loads(resp.read())
                    if len(self.worker_pids()) == self.workers:
                        return body
            except (urllib.error.URLError, OSError) as exc:
                last = exc
            time.sleep(0.1)
        raise TimeoutError(f"ingest not ready: {last}; log: {self.log_tail()}")

    def worker_pids(self) -> list[int]:
        """PIDs of the worker processes."""
        return _children(self.proc.pid) if self.proc else []

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of the service log, for failure messages."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM and wait; return the exit status."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            for pid in _children(proc.pid):
                os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.wait()
            raise

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
