"""The ``serve --workers N`` supervisor: starts N worker processes and keeps them running.

Workers share the HTTP port (SO_REUSEPORT) and the MQTT load (the shared subscription),
each with a stable MQTT client id so its session, and the messages it had not yet
acknowledged, survive a restart. A worker that dies is restarted after a capped, jittered
delay that doubles while it keeps dying and resets once it has run for a minute
(:class:`core.backoff.Backoff`). SIGTERM or SIGINT are
passed on to the workers, which flush, acknowledge and exit; the supervisor then exits 0.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import multiprocess

from core.backoff import Backoff

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)

_STABLE_S = 60.0
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 30.0
_SHUTDOWN_S = 45.0


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float = 0.0
    backoff: Backoff = field(default_factory=lambda: Backoff(_BACKOFF_FIRST_S, _BACKOFF_MAX_S))


@dataclass
class Supervisor:
    """Runs ``python -m ingest serve`` workers with ``argv`` plus ``--worker-index i``."""

    workers: int
    argv: Sequence[str]
    _procs: list[_Worker] = field(default_factory=list)
    _stopping: bool = False
    _handoff_dir: str | None = None

    def _spawn(self, worker: _Worker) -> None:
        cmd = [sys.executable, "-m", "ingest", *self.argv, "--worker-index", str(worker.index)]
        if self._handoff_dir is not None:
            cmd += ["--handoff-socket", str(Path(self._handoff_dir) / "handoff.sock")]
        worker.proc = subprocess.Popen(cmd)  # noqa: S603  (our own interpreter and arguments)
        worker.started = time.monotonic()
        log.info("worker %d started (pid %d)", worker.index, worker.proc.pid)

    def _stop(self, signum: int, _frame: object) -> None:
        if not self._stopping:
            log.info("received %s: stopping workers", signal.Signals(signum).name)
        self._stopping = True

    def run(self) -> int:
        """Supervise until told to stop; return the exit status."""
        own_dir = None
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            own_dir = tempfile.mkdtemp(prefix="ingest-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        if self.workers > 1:
            # Where worker 0 hands MQTT messages to the others (ingest.handoff); private.
            self._handoff_dir = tempfile.mkdtemp(prefix="ingest-handoff-")
        try:
            self._procs = [_Worker(i) for i in range(self.workers)]
            for worker in self._procs:
                self._spawn(worker)
            while not self._stopping:
                self._check()
                time.sleep(0.2)
            return self._shutdown()
        finally:
            for directory in (own_dir, self._handoff_dir):
                if directory:
                    shutil.rmtree(directory, ignore_errors=True)

    def _check(self) -> None:
        now = time.monotonic()
        for worker in self._procs:
            proc = worker.proc
            if proc is not None and proc.poll() is not None:
                multiprocess.mark_process_dead(proc.pid)  # type: ignore[no-untyped-call]
                ran = now - worker.started
                if ran > _STABLE_S:
                    worker.backoff.reset()
                delay = worker.backoff.next_delay()
                log.error(
                    "worker %d (pid %d) exited with status %s after %.0f s; restarting in %.1f s",
                    worker.index,
                    proc.pid,
                    proc.returncode,
                    ran,
                    delay,
                )
                worker.proc, worker.restart_at = None, now + delay
            if worker.proc is None and now >= worker.restart_at:
                self._spawn(worker)

    def _shutdown(self) -> int:
        running = [w.proc for w in self._procs if w.proc is not None and w.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _SHUTDOWN_S
        status = 0
        for proc in running:
            try:
                code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                code = proc.wait()
            if code not in (0, -signal.SIGTERM):
                status = 1
        log.info("all workers stopped")
        return status
