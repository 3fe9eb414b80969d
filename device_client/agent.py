"""The agent: sensors → sampler → spool → forwarder → transport, wired and torn down in order.

The sampler runs on the calling thread and the forwarder on a thread of its own. On stop the
sampler commits what it holds first, then the forwarder gets a moment to collect
outstanding acknowledgements and says goodbye; whatever is still in the spool is sent on the
next start.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from device_client import __version__
from device_client.config import AgentConfig
from device_client.errors import ConfigError, DeviceClientError
from device_client.forwarder import Forwarder
from device_client.sampler import Sampler
from device_client.sensors import Sensor, create_sensor
from device_client.spool import Spool
from device_client.transport import Transport
from device_client.wire import encode_attributes

__all__ = ["Agent", "attributes", "build_sensors", "build_transport"]

log = logging.getLogger(__name__)

_FORWARDER_JOIN_S = 15.0


def build_sensors(config: AgentConfig) -> list[Sensor]:
    """Instantiate every configured sensor; raise ConfigError naming the first bad one."""
    sensors: list[Sensor] = []
    try:
        sensors.extend(create_sensor(spec) for spec in config.sensors)
    except ConfigError:
        for sensor in sensors:
            sensor.close()
        raise
    return sensors


def attributes(config: AgentConfig) -> dict[str, object]:
    """Return what the device reports about itself: agent version, host, ``[attributes]``."""
    return {
        "agent": f"telemetry-device {__version__}",
        "python": ".".join(str(part) for part in sys.version_info[:3]),
        "machine": os.uname().machine,
        **config.attributes,
    }


def build_transport(config: AgentConfig) -> Transport:
    """Build the configured transport (TLS material is loaded here, so errors show early)."""
    report = encode_attributes(attributes(config))
    # Imported here so that a device loads only the client library it uses (RSS budget).
    if config.transport == "mqtt":
        from device_client.transport_mqtt import MqttTransport  # noqa: PLC0415

        assert config.mqtt is not None
        return MqttTransport(config.mqtt, config.tls, config.device_id, report)
    from device_client.transport_http import HttpTransport  # noqa: PLC0415

    assert config.http is not None
    return HttpTransport(config.http, config.tls, report)


class Agent:
    """Runs the device agent until :meth:`stop` is called (or a signal handler sets it)."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.stop_event = threading.Event()
        self.sampler: Sampler | None = None
        self.forwarder: Forwarder | None = None
        self.spool: Spool | None = None

    def stop(self) -> None:
        """Ask the agent to finish: safe from signal handlers and other threads."""
        self.stop_event.set()

    def run(self) -> None:
        """Sample and forward until stopped; raise DeviceClientError if the forwarder died."""
        config = self.config
        sensors = build_sensors(config)
        transport = build_transport(config)
        forwarder_stop = threading.Event()
        wake = threading.Event()
        try:
            with Spool(config.spool, config.device_id) as spool:
                self.spool = spool
                forwarder = Forwarder(
                    spool,
                    transport,
                    config.batch,
                    config.reconnect,
                    stop=forwarder_stop,
                    wake=wake,
                    on_crash=self.stop_event.set,
                )
                self.forwarder = forwarder
                thread = threading.Thread(target=forwarder.run, name="forwarder", daemon=True)
                self.sampler = Sampler(
                    sensors,
                    spool,
                    config.batch,
                    full_policy=config.spool.full_policy,
                    stop=self.stop_event,
                    wake=wake,
                    progress=self.log_progress,
                    progress_interval_s=config.log_interval_s,
                )
                log.info(
                    "device %s: %d sensors, %s to %s, spool %s",
                    config.device_id,
                    len(sensors),
                    config.transport,
                    config.target_url,
                    config.spool.path,
                )
                thread.start()
                try:
                    self.sampler.run()
                finally:
                    forwarder_stop.set()
                    wake.set()
                    thread.join(_FORWARDER_JOIN_S)
                    if thread.is_alive():
                        log.error("forwarder did not stop within %.0f s", _FORWARDER_JOIN_S)
                self.log_progress()
        finally:
            for sensor in sensors:
                sensor.close()
        if forwarder.crashed is not None:
            raise DeviceClientError(f"forwarder failed: {forwarder.crashed}")

    def log_progress(self) -> None:
        """Log one line of counters: sent, spooled, backlog, drops, link state."""
        sampler, forwarder, spool = self.sampler, self.forwarder, self.spool
        if sampler is None or forwarder is None or spool is None:
            return
        log.info(
            "sent=%d spooled=%d backlog=%d dropped=%d rejected=%d paused=%d "
            "sensor_errors=%d batches=%d spool_commits=%d link=%s",
            forwarder.stats.sent,
            sampler.stats.spooled,
            spool.backlog,
            sampler.stats.dropped,
            forwarder.stats.rejected,
            sampler.stats.paused,
            sampler.stats.sensor_errors,
            sampler.stats.commits,
            spool.commits,
            forwarder.state.value,
        )
