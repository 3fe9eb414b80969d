"""Sensors: the plugin interface, the registry and the built-in types.

Built-ins: ``cpu_temperature``, ``cpu``, ``load``, ``memory``, ``disk``, ``network``
(Linux hosts), ``command``, ``file`` and ``synthetic``. Third-party types are classes
derived from :class:`Sensor`, published in the ``telemetry_device.sensors`` entry-point
group (see docs/device-client.md).
"""

from __future__ import annotations

from device_client.sensors import command, file, linux, synthetic
from device_client.sensors.base import (
    ENTRY_POINT_GROUP,
    Sensor,
    available_types,
    create_sensor,
    register,
)
from device_client.sensors.parse import ValueParser, parse_w1_slave

__all__ = [
    "ENTRY_POINT_GROUP",
    "Sensor",
    "ValueParser",
    "available_types",
    "command",
    "create_sensor",
    "file",
    "linux",
    "parse_w1_slave",
    "register",
    "synthetic",
]
