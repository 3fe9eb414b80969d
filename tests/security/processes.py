"""``python -m ingest serve`` and ``python -m api serve`` as real processes, HTTP or HTTPS."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal, Self

from simulator.services import free_port

__all__ = ["ServiceProcess", "intake_env"]

_PORT_VARIABLE = {"ingest": "INGEST_HTTP_PORT", "api": "API_PORT"}


def intake_env(database_url: str) -> dict[str, str]:
    """Environment of an ingest that takes HTTP only, with no rate limit in the way."""
    return {
        "DATABASE_URL": database_url,
        "MQTT_URL": "none",
        "HTTP_RATE_PER_DEVICE": "1000000000",
        "HTTP_BURST_PER_DEVICE": "1000000000",
        "FLUSH_INTERVAL_S": "0.005",
        "RUN_JOBS": "false",
    }


class ServiceProcess:
    """One service on a free loopback port; HTTPS when its TLS certificate is configured.

    ``ca_file`` is the CA that the readiness check (and :attr:`client_context`) trusts.
    """

    def __init__(
        self,
        service: Literal["ingest", "api"],
        env: dict[str, str],
        log_path: Path,
        *,
        ca_file: Path | None = None,
        log_level: str = "INFO",
    ) -> None:
        self.port = free_port()
        self.env = os.environ | {_PORT_VARIABLE[service]: str(self.port)} | env
        tls = bool(env.get("HTTP_TLS_CERT") or env.get("API_TLS_CERT"))
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.client_context = ssl.create_default_context(cafile=ca_file) if tls else None
        workers = ["--workers", "1"] if service == "ingest" else []
        self.args = [sys.executable, "-m", service, "--log-level", log_level, "serve", *workers]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30) -> Self:
        """Start and wait until ``/healthz`` answers."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args} exited {self.proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(
                    f"{self.url}/healthz", timeout=2, context=self.client_context
                ):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise TimeoutError(f"{self.url} did not answer: {self.log()[-3000:]}")

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int:
        """SIGTERM, wait, and return the exit status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
