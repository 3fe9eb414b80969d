"""Agent configuration: a TOML file, overridden key by key from the environment.

Every scalar key can be overridden by ``TELEMETRY_<SECTION>_<KEY>`` (``TELEMETRY_<KEY>`` for
top-level keys), e.g. ``TELEMETRY_DEVICE_ID``, ``TELEMETRY_MQTT_PASSWORD``,
``TELEMETRY_SPOOL_MAX_ROWS``. Secrets may also come from files (``password_file``,
``token_file``) so that they stay out of the unit file and the process environment.
Relative paths are resolved against the directory of the configuration file.

The environment is read once, by :func:`load_config`, from the mapping it is given.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

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


@dataclass(frozen=True)
class HttpConfig:
    """Ingest endpoint: the full URL of ``POST /v1/telemetry`` and the device token."""

    url: str
    token: str = field(repr=False)
    timeout_s: float = 10.0


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
    """One ``[[sensors]]`` table: its type, metric name, period and type-specific options."""

    type: str
    name: str
    interval_s: float
    options: Mapping[str, Any] = field(default_factory=dict)


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

    @property
    def target_url(self) -> str:
        """The broker or endpoint URL of the chosen transport (no credentials in it)."""
        if self.transport == "mqtt" and self.mqtt is not None:
            return self.mqtt.url
        return self.http.url if self.http is not None else ""


class _Table:
    """Typed access to one TOML table, with env overrides and a record of unknown keys."""

    def __init__(
        self,
        data: Mapping[str, Any],
        where: str,
        env: Mapping[str, str],
        env_prefix: str | None,
    ) -> None:
        self.data = dict(data)
        self.where = where
        self.env = env
        self.env_prefix = env_prefix
        self.seen: set[str] = set()

    def _raw(self, key: str) -> Any:
        self.seen.add(key)
        if self.env_prefix is not None:
            name = f"{self.env_prefix}{key.upper()}"
            if name in self.env:
                return _EnvValue(self.env[name], name)
        return self.data.get(key)

    def fail(self, key: str, problem: str) -> ConfigError:
        """Build the one-line error for ``key``."""
        return ConfigError(f"{self.where}{key}: {problem}")

    def get(self, key: str, kind: Callable[[Any, str], _T], default: _T) -> _T:
        """Read ``key`` converted by ``kind``, or ``default`` when absent."""
        raw = self._raw(key)
        if raw is None:
            return default
        try:
            return kind(raw, key)
        except _BadValueError as exc:
            raise self.fail(key, str(exc)) from None

    def require(self, key: str, kind: Callable[[Any, str], _T]) -> _T:
        """Read ``key`` converted by ``kind``; absent is an error."""
        raw = self._raw(key)
        if raw is None:
            hint = f" (or set {self.env_prefix}{key.upper()})" if self.env_prefix else ""
            raise self.fail(key, f"is required{hint}")
        try:
            return kind(raw, key)
        except _BadValueError as exc:
            raise self.fail(key, str(exc)) from None

    def check_unknown(self) -> None:
        """Reject keys nobody read: a typo should not silently fall back to a default."""
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.fail(unknown[0], "unknown key")


class _EnvValue(str):
    """A string that came from the environment: converters coerce it instead of rejecting."""

    __slots__ = ("var",)

    def __new__(cls, value: str, var: str) -> _EnvValue:
        obj = super().__new__(cls, value)
        obj.var = var
        return obj

    var: str


class _BadValueError(ValueError):
    pass


def _str(raw: Any, _key: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise _BadValueError(f"expected a non-empty string, got {raw!r}")
    return str(raw)


def _int(raw: Any, _key: str) -> int:
    if isinstance(raw, _EnvValue):
        try:
            return int(raw.replace("_", ""))
        except ValueError:
            raise _BadValueError(f"expected an integer in {raw.var}, got {str(raw)!r}") from None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise _BadValueError(f"expected an integer, got {raw!r}")
    return int(raw)


def _positive_int(raw: Any, key: str) -> int:
    value = _int(raw, key)
    if value <= 0:
        raise _BadValueError(f"expected a positive integer, got {value}")
    return value


def _positive_float(raw: Any, _key: str) -> float:
    if isinstance(raw, _EnvValue):
        try:
            value = float(raw)
        except ValueError:
            raise _BadValueError(f"expected a number in {raw.var}, got {str(raw)!r}") from None
    elif isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise _BadValueError(f"expected a number, got {raw!r}")
    else:
        value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise _BadValueError(f"expected a positive number, got {value}")
    return value


def _bool(raw: Any, _key: str) -> bool:
    if isinstance(raw, _EnvValue):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise _BadValueError(f"expected true or false in {raw.var}, got {str(raw)!r}")
    if not isinstance(raw, bool):
        raise _BadValueError(f"expected true or false, got {raw!r}")
    return raw


def _choice(*choices: str) -> Callable[[Any, str], str]:
    def convert(raw: Any, key: str) -> str:
        value = _str(raw, key)
        if value not in choices:
            raise _BadValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    return convert


def _path_in(base: Path) -> Callable[[Any, str], Path]:
    def convert(raw: Any, key: str) -> Path:
        path = Path(_str(raw, key)).expanduser()
        return path if path.is_absolute() else base / path

    return convert


def _existing_file(base: Path) -> Callable[[Any, str], Path]:
    def convert(raw: Any, key: str) -> Path:
        path = _path_in(base)(raw, key)
        if not path.is_file():
            raise _BadValueError(f"no such file: {path}")
        return path

    return convert


def _secret(table: _Table, key: str, base: Path) -> str | None:
    """Read a secret inline or from ``<key>_file`` (first line, whitespace stripped)."""
    inline = table.get(key, _str, None)
    path = table.get(f"{key}_file", _existing_file(base), None)
    if inline is not None and path is not None:
        raise table.fail(key, f"give either {key} or {key}_file, not both")
    if path is None:
        return inline
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise table.fail(f"{key}_file", f"cannot read {path}: {exc.strerror}") from None
    if not text:
        raise table.fail(f"{key}_file", f"{path} is empty")
    return text


def _section(data: Mapping[str, Any], name: str, source: str, env: Mapping[str, str]) -> _Table:
    raw = data.get(name, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [{name}] must be a table")
    return _Table(raw, f"{source}: [{name}] ", env, f"{ENV_PREFIX}{name.upper()}_")


def _parse_mqtt(table: _Table, device_id: str, base: Path, *, required: bool) -> MqttConfig | None:
    url = table.get("url", _str, None)
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
    username = table.get("username", _str, None) or parts.username or device_id
    password = _secret(table, "password", base) or parts.password
    keepalive_s = table.get("keepalive_s", _positive_int, 30)
    window = table.get("window", _positive_int, 16)
    if keepalive_s < 5:
        raise table.fail("keepalive_s", "must be at least 5")
    return MqttConfig(
        url=f"{parts.scheme}://{parts.hostname}:{port}",
        host=parts.hostname,
        port=port,
        use_tls=use_tls,
        username=username,
        password=password,
        client_id=table.get("client_id", _str, device_id),
        keepalive_s=keepalive_s,
        window=window,
        status_topic=table.get("status_topic", _bool, True),
    )


def _parse_http(table: _Table, base: Path, *, required: bool) -> HttpConfig | None:
    url = table.get("url", _str, None)
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
    token = _secret(table, "token", base)
    if token is None:
        raise table.fail("token", f"is required for transport http (or {ENV_PREFIX}HTTP_TOKEN)")
    return HttpConfig(url=url, token=token, timeout_s=table.get("timeout_s", _positive_float, 10.0))


def _parse_sensors(data: Mapping[str, Any], source: str) -> tuple[SensorSpec, ...]:
    raw = data.get("sensors", [])
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise ConfigError(f"{source}: sensors must be an array of tables ([[sensors]])")
    specs: list[SensorSpec] = []
    names: set[str] = set()
    for index, item in enumerate(raw):
        table = _Table(item, f"{source}: [[sensors]] #{index + 1} ", {}, None)
        kind = table.require("type", _str)
        name = table.get("name", _str, kind)
        if not METRIC_RE.match(name):
            raise table.fail("name", f"{name!r} is not a valid metric name ({METRIC_RE.pattern})")
        if name in names:
            raise table.fail("name", f"{name!r} is used by another sensor")
        names.add(name)
        interval_s = table.require("interval_s", _positive_float)
        options = {k: v for k, v in item.items() if k not in ("type", "name", "interval_s")}
        specs.append(SensorSpec(type=kind, name=name, interval_s=interval_s, options=options))
    return tuple(specs)


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

    top = _Table(data, f"{source}: ", env, ENV_PREFIX)
    top.seen.update(("mqtt", "http", "tls", "batch", "spool", "reconnect", "sensors"))
    device_id = top.require("device_id", _str)
    if not DEVICE_ID_RE.match(device_id):
        raise top.fail("device_id", f"{device_id!r} is not a valid device id")
    transport = top.require("transport", _choice(*TRANSPORTS))
    log_interval_s = top.get("log_interval_s", _positive_float, 60.0)
    top.check_unknown()

    tls_t = _section(data, "tls", source, env)
    tls = TlsConfig(
        ca_file=tls_t.get("ca_file", _existing_file(base), None),
        cert_file=tls_t.get("cert_file", _existing_file(base), None),
        key_file=tls_t.get("key_file", _existing_file(base), None),
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
        max_readings=batch_t.get("max_readings", _positive_int, 100),
        interval_s=batch_t.get("interval_s", _positive_float, 10.0),
        replay_rate_per_s=batch_t.get("replay_rate_per_s", _positive_float, 5000.0),
    )
    batch_t.check_unknown()

    spool_t = _section(data, "spool", source, env)
    spool = SpoolConfig(
        path=spool_t.get("path", _path_in(base), base / "spool.db"),
        max_rows=spool_t.get("max_rows", _positive_int, 1_000_000),
        max_bytes=spool_t.get("max_bytes", _positive_int, 256 * 1024 * 1024),
        full_policy=spool_t.get("full_policy", _choice(*FULL_POLICIES), "drop_oldest"),
        synchronous=spool_t.get("synchronous", _choice("normal", "full"), "normal"),
    )
    spool_t.check_unknown()

    reconnect_t = _section(data, "reconnect", source, env)
    reconnect = ReconnectConfig(
        initial_s=reconnect_t.get("initial_s", _positive_float, 1.0),
        max_s=reconnect_t.get("max_s", _positive_float, 60.0),
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
    )
