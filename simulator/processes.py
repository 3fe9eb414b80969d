"""Platform services as child processes: ``python -m ingest serve``, ``python -m api serve``.

The demo launcher and the test suite start them the same way: each child runs our own
interpreter in a process group of its own, its output in a log file. :meth:`Child.stop`
sends SIGTERM (the services flush, acknowledge and exit 0), waits, and kills the whole
group if that takes too long, so no worker outlives its supervisor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Child", "spawn"]


@dataclass
class Child:
    """A service started by :func:`spawn`."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """The process id of the service (the supervisor, for a multi-worker ingest)."""
        return self.proc.pid

    def failure(self) -> str | None:
        """Say how the process ended, with the last line it logged; None while it runs."""
        code = self.proc.poll()
        if code is None:
            return None
        lines = self.log_tail(1)
        last = f': "{lines[-1][:300]}"' if lines else ""
        return f"{self.name} exited with code {code}{last}; see {self.log}"

    def log_tail(self, lines: int = 30) -> list[str]:
        """Return the last ``lines`` lines the process logged."""
        if not self.log.exists():
            return []
        return self.log.read_text(errors="replace").strip().splitlines()[-lines:]

    def workers(self) -> list[int]:
        """List the process ids of its live children (an ingest's workers), zombies excluded."""
        try:
            pids = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return []
        return [int(pid) for pid in pids if _alive(int(pid))]

    def kill(self) -> int:
        """SIGKILL the whole group at once (a crash, for fault tests); return the status."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait()

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, wait up to ``timeout_s`` for a graceful exit, else kill the group."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def spawn(name: str, args: Sequence[str], env: Mapping[str, str], log: Path) -> Child:
    """Start ``python -m <args>`` with ``env`` added to ours, writing to the file ``log``."""
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603  (our own interpreter and arguments)
            [sys.executable, "-m", *args],
            env=os.environ | dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(name, proc, log)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
