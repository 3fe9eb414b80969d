"""What the demo keeps in its data directory between runs: ports, PIDs, the admin key.

See :mod:`simulator.demo` for the directory's layout.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from simulator.errors import DemoError
from simulator.services import pick_port, port_available

__all__ = [
    "admin_key",
    "choose_port",
    "clean",
    "read_json",
    "read_secret",
    "running_launcher",
    "write_private",
]


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object kept in the data directory ({} when absent)."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DemoError(f"{path}: unreadable ({exc}); `make demo-clean` starts afresh") from exc
    return doc if isinstance(doc, dict) else {}


def read_secret(path: Path) -> str | None:
    """Return the secret kept in ``path``, or None when there is none."""
    if not path.exists():
        return None
    return path.read_text().strip() or None


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, readable by its owner only (mode 0600)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)


def running_launcher(data_dir: Path) -> int | None:
    """Return the PID of a demo launcher that is running on ``data_dir``, if any."""
    pid = read_json(data_dir / "run.json").get("launcher")
    if not isinstance(pid, int) or pid == os.getpid():
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"simulator" in cmdline else None


def clean(data_dir: Path) -> str:
    """Remove the demo's data directory; refuse while a demo runs or if it is not the demo's."""
    data_dir = data_dir.resolve()
    if not data_dir.exists():
        return f"nothing to remove: {data_dir} does not exist"
    pid = running_launcher(data_dir)
    if pid is not None:
        raise DemoError(f"a demo is running on {data_dir} (pid {pid}): stop it with Ctrl-C first")
    if not (data_dir / "demo.json").exists():
        raise DemoError(f"{data_dir} is not a demo data directory (no demo.json): left alone")
    shutil.rmtree(data_dir)
    return f"removed {data_dir}"


def admin_key(data_dir: Path) -> str:
    """Return the admin key kept in ``admin-key``, made on the first run."""
    path = data_dir / "admin-key"
    if path.exists():
        return path.read_text().strip()
    key = "ak_" + secrets.token_urlsafe(32)
    write_private(path, key + "\n")
    return key


def choose_port(given: int | None, recorded: object, default: int, flag: str) -> int:
    """Take the port given by ``flag``, else the one recorded last run, else a free one."""
    if given is not None:
        if not port_available(given):
            raise DemoError(f"port {given} on 127.0.0.1 is in use: choose another with {flag}")
        return given
    return pick_port(recorded if isinstance(recorded, int) else None, default)
