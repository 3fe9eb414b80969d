"""Device agent: samples sensors, spools readings on disk and forwards them over MQTT or HTTP.

It depends on paho-mqtt and the standard library only, and runs on Python 3.9+. The
transports live in ``device_client.transport_mqtt`` and ``device_client.transport_http`` and
are imported only when used, so that an HTTP device never loads paho.
"""

from __future__ import annotations

__version__ = "0.1.0"

from device_client.agent import Agent, build_sensors, build_transport
from device_client.backoff import Backoff, TokenBucket
from device_client.config import (
    AgentConfig,
    BatchConfig,
    HttpConfig,
    MqttConfig,
    ReconnectConfig,
    SensorSpec,
    SpoolConfig,
    TlsConfig,
    load_config,
)
from device_client.errors import (
    BatchRejectedError,
    ConfigError,
    DeviceClientError,
    ResourceStateError,
    RetryLaterError,
    SensorError,
    SpoolError,
    TransportError,
)
from device_client.forwarder import Forwarder, LinkState
from device_client.sampler import Sampler
from device_client.sensors import Sensor, create_sensor, register
from device_client.spool import Spool
from device_client.spool_status import SpoolStatus, read_status

__all__ = [
    "Agent",
    "AgentConfig",
    "Backoff",
    "BatchConfig",
    "BatchRejectedError",
    "ConfigError",
    "DeviceClientError",
    "Forwarder",
    "HttpConfig",
    "LinkState",
    "MqttConfig",
    "ReconnectConfig",
    "ResourceStateError",
    "RetryLaterError",
    "Sampler",
    "Sensor",
    "SensorError",
    "SensorSpec",
    "Spool",
    "SpoolConfig",
    "SpoolError",
    "SpoolStatus",
    "TlsConfig",
    "TokenBucket",
    "TransportError",
    "__version__",
    "build_sensors",
    "build_transport",
    "create_sensor",
    "load_config",
    "read_status",
    "register",
]
