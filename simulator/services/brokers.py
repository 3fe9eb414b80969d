"""Private MQTT brokers: Mosquitto (with persistence, TLS and dynamic security) or amqtt.

Mosquitto comes from ``PATH`` or ``/usr/sbin``. The pure-Python amqtt broker (the ``demo``
extra) stands in for it where it is absent, with lower limits (:class:`AmqttServer`); it
runs as we do, like the ingest.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from simulator.errors import ServiceError, ServiceNotInstalledError
from simulator.services.base import (
    free_port,
    hand_over,
    unprivileged_account,
    wait_for_port,
)

__all__ = [
    "AmqttServer",
    "BrokerTls",
    "MosquittoServer",
    "find_amqtt",
    "find_dynsec_plugin",
    "find_mosquitto",
]


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
        self._account = unprivileged_account("mosquitto")

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
        hand_over(self.data_dir, self._account)
        self._proc = subprocess.Popen(  # noqa: S603  (fixed binary, generated config)
            [str(self.binary), "-c", str(self.config_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self._account,
            # Its own session: a Ctrl-C meant for whoever started it does not reach it first.
            start_new_session=True,
        )
        wait_for_port(self.port, self._proc, "mosquitto", self.log_file)
        if self.tls is not None:
            wait_for_port(self.tls.port, self._proc, "mosquitto (TLS)", self.log_file)

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
        wait_for_port(self.port, self._proc, "amqtt", self.log_file)
