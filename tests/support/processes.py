"""The platform's services as real processes, for the end-to-end, fault and security tests.

One launcher for all of them, on the demo's (:mod:`simulator.processes`):
:class:`ServiceProcess` runs ``python -m ingest serve`` or ``python -m api serve`` on a
free loopback port (HTTPS where its certificate is configured), waits until its readiness
endpoint answers 200 and, for an ingest, until every worker runs, and stops it with
SIGTERM. :func:`ingest_env` and :func:`api_env` are the settings tests start them with.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Self

from simulator.processes import Child, spawn
from simulator.services import free_port

__all__ = ["ServiceProcess", "api_env", "http_only_ingest_env", "ingest_env"]

_PORT_VARIABLE = {"ingest": "INGEST_HTTP_PORT", "api": "API_PORT"}


def ingest_env(database_url: str, mqtt_url: str, **settings: str) -> dict[str, str]:
    """An ingest in the default MQTT configuration with client ids of its own, quick to flush.

    ``settings`` are further settings by field name (``flush_interval_s="0.5"``; a
    ``mqtt_share_group`` makes every worker a member of that shared subscription).
    """
    tag = uuid.uuid4().hex[:8]
    return {
        "DATABASE_URL": database_url,
        "MQTT_URL": mqtt_url,
        "MQTT_CLIENT_ID": f"ingest-{tag}",
        "MQTT_SESSION_EXPIRY_S": "300",
        "FLUSH_INTERVAL_S": "0.02",
        "DB_RETRY_MAX_S": "2",
        "ROLLUP_REFRESH_INTERVAL_S": "3600",
    } | {name.upper(): value for name, value in settings.items()}


def http_only_ingest_env(database_url: str) -> dict[str, str]:
    """An ingest that takes HTTP only, with no rate limit in the way."""
    return {
        "DATABASE_URL": database_url,
        "MQTT_URL": "none",
        "HTTP_RATE_PER_DEVICE": "1000000000",
        "HTTP_BURST_PER_DEVICE": "1000000000",
        "FLUSH_INTERVAL_S": "0.005",
        "RUN_JOBS": "false",
    }


def api_env(database_url: str, admin_key: str, **settings: str) -> dict[str, str]:
    """A query API with an admin key and no rate limit in the way."""
    return {
        "DATABASE_URL": database_url,
        "API_HOST": "127.0.0.1",
        "API_ADMIN_KEY": admin_key,
        "API_RATE_PER_KEY": "100000",
        "API_BURST_PER_KEY": "100000",
    } | {name.upper(): value for name, value in settings.items()}


class ServiceProcess:
    """One service on a free loopback port; ``ca_file`` is the CA its HTTPS is checked with.

    It counts as started when ``ready_path`` answers 200: ``/readyz`` (the database and the
    broker reached), or ``/healthz`` for a service meant to run without them.
    """

    def __init__(
        self,
        service: Literal["ingest", "api"],
        env: Mapping[str, str],
        log_path: Path,
        *,
        workers: int = 1,
        ca_file: Path | None = None,
        log_level: str = "INFO",
        ready_path: str = "/readyz",
    ) -> None:
        self.service = service
        self.ready_path = ready_path
        self.port = free_port()
        self.env = dict(env) | {_PORT_VARIABLE[service]: str(self.port)}
        tls = bool(env.get("HTTP_TLS_CERT") or env.get("API_TLS_CERT"))
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.client_context = ssl.create_default_context(cafile=ca_file) if tls else None
        self.workers = workers if service == "ingest" else 0
        serve = ["serve", "--workers", str(workers)] if service == "ingest" else ["serve"]
        self.args = [service, "--log-level", log_level, *serve]
        self.log_path = log_path
        self.child: Child | None = None

    def start(self, timeout_s: float = 30) -> Self:
        """Start and wait until it is ready (see :meth:`wait_ready`)."""
        self.child = spawn(self.service, self.args, self.env, self.log_path)
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 30) -> dict[str, object]:
        """Wait until the ready path answers 200 and every worker runs; return its body."""
        deadline = time.monotonic() + timeout_s
        last: object = "no answer"
        while time.monotonic() < deadline:
            assert self.child is not None, "start() first"
            failure = self.child.failure()
            if failure is not None:
                raise RuntimeError(f"{failure}\n{self.log_tail()}")
            status, body = self.get(self.ready_path)
            if status == 200 and len(self.worker_pids()) == self.workers:
                return dict(json.loads(body))
            last = f"{status} {body[:200]!r}, {len(self.worker_pids())} workers"
            time.sleep(0.1)
        raise TimeoutError(f"{self.service} not ready: {last}; log:\n{self.log_tail()}")

    def get(self, path: str) -> tuple[int, bytes]:
        """GET ``path``: the status and body (0 when nothing answers)."""
        try:
            with urllib.request.urlopen(
                f"{self.url}{path}", timeout=2, context=self.client_context
            ) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def worker_pids(self) -> list[int]:
        """PIDs of the ingest's live worker processes."""
        return self.child.workers() if self.child is not None else []

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of its log, for failure messages."""
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM and wait; return the exit status."""
        child, self.child = self.child, None
        return 0 if child is None else child.stop(timeout_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
