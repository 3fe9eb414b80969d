"""What every private service shares: free loopback ports, waiting for one, an account to run as.

When we run as root, servers are started as an unprivileged account (PostgreSQL refuses
root), and their directories are handed over to it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import subprocess
import time
from pathlib import Path

from simulator.errors import ServiceError

__all__ = [
    "START_TIMEOUT_S",
    "free_port",
    "hand_over",
    "pick_port",
    "port_available",
    "unprivileged_account",
    "wait_for_port",
]

START_TIMEOUT_S = 30.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_available(port: int) -> bool:
    """Whether a TCP listener could bind 127.0.0.1:``port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do: connections of a listener just closed (TIME_WAIT) do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pick_port(*preferred: int | None) -> int:
    """Return the first of ``preferred`` that is free on 127.0.0.1, else any free port."""
    for port in preferred:
        if port is not None and port_available(port):
            return port
    return free_port()


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    """Wait until ``proc`` listens on ``port``; ServiceError if it exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{what} exited with code {proc.returncode}; see {log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise ServiceError(f"{what} did not listen on port {port} within {START_TIMEOUT_S:.0f} s")


def unprivileged_account(preferred: str) -> str | None:
    """Name the account to run a server as: None unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in (preferred, "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise ServiceError("running as root and no unprivileged account exists to run servers as")


def hand_over(path: Path, account: str | None) -> None:
    """Give a service's directory to the account that runs it."""
    if account is None:
        return
    entry = pwd.getpwnam(account)
    for item in [path, *path.rglob("*")]:
        os.chown(item, entry.pw_uid, entry.pw_gid)
    # Its parents must be traversable by that account (mkdtemp makes them 0700).
    for parent in path.parents:
        if parent == Path(parent.anchor):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o011)
