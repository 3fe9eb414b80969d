"""Agent configuration: a TOML file, overridden key by key from the environment.

Every scalar key can be overridden by ``TELEMETRY_<SECTION>_<KEY>`` (``TELEMETRY_<KEY>`` for
top-level keys), e.g. ``TELEMETRY_DEVICE_ID``, ``TELEMETRY_MQTT_PASSWORD``,
``TELEMETRY_SPOOL_MAX_ROWS``. Secrets may also come from files (``password_file``,
``token_file``) so that they stay out of the unit file and the process environment.
Relative paths are resolved against the directory of the configuration file.

The environment is read once, by :func:`load_config`, from the mapping it is given.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from device_client.config_values import (
    Table,
    boolean,
    choice,
    existing_file,
    path_in,
    positive_float,
    positive_int,
    secret,
    string,
)
from device_client.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Raspberry Pi OS bullseye (Python 3.9)
    import tomli as tomllib  # type: ignore[import-not-found]  # installed there, not here

__all__ = [
    "DEVICE_ID_RE",
    "ENV_PREFIX",
    "METRIC_RE",
    "AgentConfig",
    "BatchConfig",
    "HttpConfig",
    "MqttConfig",
    "ReconnectConfig",
    "SensorSpec",
    "SpoolConfig",
    "TlsConfig",
    "load_config",
]

ENV_PREFIX = "TELEMETRY_"
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
METRIC_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")
FULL_POLICIES = ("drop_oldest", "pause")
RECEIPT_MODES = ("auto", "on", "off")
TRANSPORTS = ("mqtt", "http")

_T = TypeVar("_T")


@dataclass(frozen=True)
class TlsConfig:
    """TLS material; the system trust store is used when ``ca_file`` is not given."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class MqttConfig:
    """Broker connection: ``mqtt://host[:1883]`` or ``mqtts://host[:8883]``."""

    url: str
    host: str
    port: int
    use_tls: bool
    username: str
    password: str | None = field(default=None, repr=False)
    client_id: str = ""
    keepalive_s: int = 30
    window: int = 16
    status_topic: bool = True
    receipts: str = "auto"
    receipt_timeout_s: float = 30.0


@dataclass(frozen=True)
class HttpConfig:
    """Ingest endpoint: the full URL of ``POST /v1/telemetry`` and the device token."""

    url: str
    token: str = field(repr=False)
    timeout_s: float = 10.0

    @property
    def attributes_url(self) -> str:
        """Where the device reports its attributes: ``PUT`` beside the telemetry URL."""
        parts = urlsplit(self.url)
        path = parts.path.rsplit("/", 1)[0] + "/attributes"
        return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


@dataclass(frozen=True)
class BatchConfig:
    """How readings are grouped: per spool commit, per message, and replay speed."""

    max_readings: int = 100
    interval_s: float = 10.0
    replay_rate_per_s: float = 5000.0


@dataclass(frozen=True)
class SpoolConfig:
    """The on-disk queue and what happens when it is full."""

    path: Path
    max_rows: int = 1_000_000
    max_bytes: int = 256 * 1024 * 1024
    full_policy: str = "drop_oldest"
    synchronous: str = "normal"


@dataclass(frozen=True)
class ReconnectConfig:
    """Capped, jittered exponential backoff between connection attempts."""

    initial_s: float = 1.0
    max_s: float = 60.0


@dataclass(frozen=True)
class SensorSpec:
    """One ``[[sensors]]`` table: its type, metric name, period and type-specific options.

    ``device``: the child device it reads, when the agent runs as a gateway (None: the
    agent's own device).
    """

    type: str
    name: str
    interval_s: float
    options: Mapping[str, Any] = field(default_factory=dict)
    device: str | None = None


@dataclass(frozen=True)
class AgentConfig:
    """The whole configuration, built once by :func:`load_config` and passed down."""

    device_id: str
    transport: str
    spool: SpoolConfig
    sensors: tuple[SensorSpec, ...]
    batch: BatchConfig = BatchConfig()
    reconnect: ReconnectConfig = ReconnectConfig()
    tls: TlsConfig = TlsConfig()
    mqtt: MqttConfig | None = None
    http: HttpConfig | None = None
    log_interval_s: float = 60.0
    source: str = "<memory>"
    #: What the device reports about itself besides the agent's own (``[attributes]``).
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def target_url(self) -> str:
        """The broker or endpoint URL of the chosen transport (no credentials in it)."""
        if self.transport == "mqtt" and self.mqtt is not None:
            return self.mqtt.url
        return self.http.url if self.http is not None else ""


def _section(data: Mapping[str, Any], name: str, source: str, env: Mapping[str, str]) -> Table:
    raw = data.get(name, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [{name}] must be a table")
    return Table(raw, f"{source}: [{name}] ", env, f"{ENV_PREFIX}{name.upper()}_")


def _parse_mqtt(table: Table, device_id: str, base: Path, *, required: bool) -> MqttConfig | None:
    url = table.get("url", string, None)
    if url is None:
        if required:
            raise table.fail("url", f"is required for transport mqtt (or set {ENV_PREFIX}MQTT_URL)")
        table.seen.update(table.data)
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise table.fail("url", f"expected mqtt://host[:port] or mqtts://host[:port], got {url!r}")
    use_tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if use_tls else 1883)
    except ValueError:
        raise table.fail("url", f"bad port in {url!r}") from None
    username = table.get("username", string, None) or parts.username or device_id
    password = secret(table, "password", base) or parts.password
    keepalive_s = table.get("keepalive_s", positive_int, 30)
    window = table.get("window", positive_int, 16)
    if keepalive_s < 5:
        raise table.fail("keepalive_s", "must be at least 5")
    return MqttConfig(
        url=f"{parts.scheme}://{parts.hostname}:{port}",
        host=parts.hostname,
        port=port,
        use_tls=use_tls,
        username=username,
        password=password,
        client_id=table.get("client_id", string, device_id),
        keepalive_s=keepalive_s,
        window=window,
        status_topic=table.get("status_topic", boolean, True),
        receipts=table.get("receipts", choice(*RECEIPT_MODES), "auto"),
        receipt_timeout_s=table.get("receipt_timeout_s", positive_float, 30.0),
    )


def _parse_http(table: Table, base: Path, *, required: bool) -> HttpConfig | None:
    url = table.get("url", string, None)
    if url is None:
        if required:
            raise table.fail("url", f"is required for transport http (or set {ENV_PREFIX}HTTP_URL)")
        table.seen.update(table.data)
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise table.fail("url", f"expected http(s)://host[:port][/path], got {url!r}")
    if parts.path in ("", "/"):
        url = f"{parts.scheme}://{parts.netloc}/v1/telemetry"
    token = secret(table, "token", base)
    if token is None:
        raise table.fail("token", f"is required for transport http (or {ENV_PREFIX}HTTP_TOKEN)")
    return HttpConfig(url=url, token=token, timeout_s=table.get("timeout_s", positive_float, 10.0))


def _parse_sensors(data: Mapping[str, Any], source: str) -> tuple[SensorSpec, ...]:
    raw = data.get("sensors", [])
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise ConfigError(f"{source}: sensors must be an array of tables ([[sensors]])")
    specs: list[SensorSpec] = []
    names: set[tuple[str | None, str]] = set()
    for index, item in enumerate(raw):
        table = Table(item, f"{source}: [[sensors]] #{index + 1} ", {}, None)
        kind = table.require("type", string)
        name = table.get("name", string, kind)
        if not METRIC_RE.match(name):
            raise table.fail("name", f"{name!r} is not a valid metric name ({METRIC_RE.pattern})")
        device = table.get("device", string, None)
        if device is not None and not DEVICE_ID_RE.match(device):
            raise table.fail("device", f"{device!r} is not a valid device id")
        if (device, name) in names:
            raise table.fail("name", f"{name!r} is used by another sensor of the same device")
        names.add((device, name))
        interval_s = table.require("interval_s", positive_float)
        options = {
            k: v for k, v in item.items() if k not in ("type", "name", "interval_s", "device")
        }
        specs.append(
            SensorSpec(type=kind, name=name, interval_s=interval_s, options=options, device=device)
        )
    return tuple(specs)


def _parse_attributes(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    raw = data.get("attributes", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [attributes] must be a table")
    for key, value in raw.items():
        if not isinstance(value, (str, int, float, bool)):
            raise ConfigError(
                f"{source}: [attributes] {key}: expected a string, number or boolean, got {value!r}"
            )
    return dict(raw)


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Read ``path`` and apply overrides from ``environ``; raise ConfigError on any problem."""
    env: Mapping[str, str] = environ if environ is not None else {}
    source = str(path)
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    base = file.resolve().parent

    top = Table(data, f"{source}: ", env, ENV_PREFIX)
    top.seen.update(("mqtt", "http", "tls", "batch", "spool", "reconnect", "sensors", "attributes"))
    device_id = top.require("device_id", string)
    if not DEVICE_ID_RE.match(device_id):
        raise top.fail("device_id", f"{device_id!r} is not a valid device id")
    transport = top.require("transport", choice(*TRANSPORTS))
    log_interval_s = top.get("log_interval_s", positive_float, 60.0)
    top.check_unknown()

    tls_t = _section(data, "tls", source, env)
    tls = TlsConfig(
        ca_file=tls_t.get("ca_file", existing_file(base), None),
        cert_file=tls_t.get("cert_file", existing_file(base), None),
        key_file=tls_t.get("key_file", existing_file(base), None),
    )
    if tls.key_file is not None and tls.cert_file is None:
        raise tls_t.fail("key_file", "needs cert_file too")
    tls_t.check_unknown()

    mqtt_t = _section(data, "mqtt", source, env)
    mqtt = _parse_mqtt(mqtt_t, device_id, base, required=transport == "mqtt")
    mqtt_t.check_unknown()
    http_t = _section(data, "http", source, env)
    http = _parse_http(http_t, base, required=transport == "http")
    http_t.check_unknown()

    batch_t = _section(data, "batch", source, env)
    batch = BatchConfig(
        max_readings=batch_t.get("max_readings", positive_int, 100),
        interval_s=batch_t.get("interval_s", positive_float, 10.0),
        replay_rate_per_s=batch_t.get("replay_rate_per_s", positive_float, 5000.0),
    )
    batch_t.check_unknown()

    spool_t = _section(data, "spool", source, env)
    spool = SpoolConfig(
        path=spool_t.get("path", path_in(base), base / "spool.db"),
        max_rows=spool_t.get("max_rows", positive_int, 1_000_000),
        max_bytes=spool_t.get("max_bytes", positive_int, 256 * 1024 * 1024),
        full_policy=spool_t.get("full_policy", choice(*FULL_POLICIES), "drop_oldest"),
        synchronous=spool_t.get("synchronous", choice("normal", "full"), "normal"),
    )
    spool_t.check_unknown()

    reconnect_t = _section(data, "reconnect", source, env)
    reconnect = ReconnectConfig(
        initial_s=reconnect_t.get("initial_s", positive_float, 1.0),
        max_s=reconnect_t.get("max_s", positive_float, 60.0),
    )
    if reconnect.max_s < reconnect.initial_s:
        raise reconnect_t.fail("max_s", "must not be smaller than initial_s")
    reconnect_t.check_unknown()

    sensors = _parse_sensors(data, source)
    if not sensors:
        raise ConfigError(f"{source}: no sensors configured (add at least one [[sensors]] table)")

    return AgentConfig(
        device_id=device_id,
        transport=transport,
        spool=spool,
        sensors=sensors,
        batch=batch,
        reconnect=reconnect,
        tls=tls,
        mqtt=mqtt,
        http=http,
        log_interval_s=log_interval_s,
        source=source,
        attributes=_parse_attributes(data, source),
    )
