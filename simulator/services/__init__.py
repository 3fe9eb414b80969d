"""Private PostgreSQL and MQTT brokers for the demo, load runs and the test suite.

Each service runs from a directory of its own on a loopback port, started with the
binaries this machine has (:mod:`~simulator.services.postgres`,
:mod:`~simulator.services.brokers`; what they share is in :mod:`~simulator.services.base`).
Failures raise :class:`~simulator.errors.ServiceError`
(:class:`~simulator.errors.ServiceNotInstalledError` when the binaries are missing).
"""

from __future__ import annotations

from simulator.services.base import free_port, pick_port, port_available
from simulator.services.brokers import (
    AmqttServer,
    BrokerTls,
    MosquittoServer,
    find_amqtt,
    find_dynsec_plugin,
    find_mosquitto,
)
from simulator.services.postgres import PostgresServer, find_postgres_bindir

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
