"""The sensor interface and the registry that maps a ``type`` to its class.

Built-in sensors register themselves with :func:`register`. Third-party sensors are found
through the ``telemetry_device.sensors`` entry-point group, loaded only when a configured
``type`` is not built in, so that an agent with built-ins only imports nothing extra.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from device_client.config import METRIC_RE, SensorSpec
from device_client.errors import ConfigError
from device_client.wire import Value

if TYPE_CHECKING:
    from importlib import metadata

__all__ = [
    "ENTRY_POINT_GROUP",
    "Sensor",
    "available_types",
    "create_sensor",
    "register",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "telemetry_device.sensors"

_REGISTRY: dict[str, type[Sensor]] = {}
_S = TypeVar("_S", bound="type[Sensor]")


class Sensor(abc.ABC):
    """A source of one or more metrics, read by the agent every ``spec.interval_s``.

    Subclasses validate ``spec.options`` in ``__init__`` (raise ConfigError with a clear
    message), and implement :meth:`read`, which returns metric name → value (a number, a
    boolean or a string) or raises SensorError. ``read`` runs in the sampling loop: it
    should return within a second or so.

    On a gateway, a sensor reads a child device: the one its ``device`` option names, or,
    for a sensor that reads several (a BLE or Modbus hub), those :meth:`read_devices`
    names.
    """

    def __init__(self, spec: SensorSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        """The metric name (single-valued sensors) or prefix (multi-valued ones)."""
        return self.spec.name

    @property
    def label(self) -> str:
        """The sensor in log lines: its name, and the child device it reads, if any."""
        return (
            self.spec.name if self.spec.device is None else f"{self.spec.name}@{self.spec.device}"
        )

    @abc.abstractmethod
    def read(self) -> Mapping[str, Value]:
        """Take one sample: metric name → value."""

    def read_devices(self) -> Mapping[str | None, Mapping[str, Value]]:
        """Take one sample of each device read: device id (None: the agent's own) → values.

        The default is :meth:`read`, for the device of the ``device`` option. A sensor that
        reads several child devices overrides this.
        """
        return {self.spec.device: self.read()}

    def close(self) -> None:  # noqa: B027  (optional hook, empty by design)
        """Release what the sensor holds (a bus handle, a file); the default does nothing."""

    def option(
        self, key: str, kind: type[Any], default: Any = None, *, required: bool = False
    ) -> Any:
        """Read one option of this sensor's table, checking its type."""
        if key not in self.spec.options:
            if required:
                raise self.config_error(f"option {key!r} is required")
            return default
        value = self.spec.options[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise self.config_error(f"option {key!r} must be a {kind.__name__}, got {value!r}")
        return value

    def check_options(self, *known: str) -> None:
        """Reject option keys this sensor does not know (typos should not pass silently)."""
        unknown = sorted(set(self.spec.options) - set(known))
        if unknown:
            raise self.config_error(f"unknown option {unknown[0]!r}")

    def metric(self, suffix: str) -> str:
        """Name a metric of a multi-valued sensor: ``{name}_{suffix}``, validated."""
        name = f"{self.spec.name}_{suffix}" if suffix else self.spec.name
        if not METRIC_RE.match(name):
            raise self.config_error(f"metric name {name!r} is invalid")
        return name

    def config_error(self, problem: str) -> ConfigError:
        """Build a ConfigError naming this sensor."""
        return ConfigError(f"sensor {self.spec.name!r} ({self.spec.type}): {problem}")


def register(type_name: str) -> Callable[[_S], _S]:
    """Class decorator: make a built-in sensor class available as ``type = type_name``."""

    def decorate(cls: _S) -> _S:
        _REGISTRY[type_name] = cls
        return cls

    return decorate


def _entry_points() -> list[metadata.EntryPoint]:
    # importlib.metadata costs ~2 MB of RSS: loaded only when a plugin type is asked for.
    from importlib import metadata  # noqa: PLC0415

    # Walking distributions works alike on 3.9 (dict API) and 3.10+ (selectable API).
    found: dict[str, metadata.EntryPoint] = {}
    for dist in metadata.distributions():
        for entry in dist.entry_points:
            if entry.group == ENTRY_POINT_GROUP:
                found.setdefault(entry.name, entry)
    return list(found.values())


def _load_plugin(type_name: str) -> type[Sensor] | None:
    for entry in _entry_points():
        if entry.name != type_name:
            continue
        try:
            loaded = entry.load()
        except Exception as exc:  # a broken plugin is a configuration problem
            raise ConfigError(
                f"sensor type {type_name!r}: plugin {entry.value} failed to load: {exc}"
            ) from exc
        if not (isinstance(loaded, type) and issubclass(loaded, Sensor)):
            raise ConfigError(f"sensor type {type_name!r}: {entry.value} is not a Sensor class")
        return loaded
    return None


def available_types() -> list[str]:
    """Names of the built-in types plus those installed through entry points."""
    return sorted(set(_REGISTRY) | {entry.name for entry in _entry_points()})


def create_sensor(spec: SensorSpec) -> Sensor:
    """Instantiate the sensor that ``spec.type`` names; raise ConfigError if it cannot."""
    cls = _REGISTRY.get(spec.type) or _load_plugin(spec.type)
    if cls is None:
        raise ConfigError(
            f"sensor {spec.name!r}: unknown type {spec.type!r} "
            f"(available: {', '.join(available_types())})"
        )
    return cls(spec)
