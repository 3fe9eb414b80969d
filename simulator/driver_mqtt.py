"""MQTT driver: a small pool of paho clients, driven by the asyncio loop, for the fleet.

Thousands of devices share a few connections (one per ``devices_per_connection``), so no
paho network thread runs per device: like the ingest's consumer, each client is kept
connected by :class:`core.mqtt_link.MqttLink`, its socket read and written by the event
loop. A device's message goes to ``telemetry/{device_id}`` (``/senml`` for SenML) at QoS 1
and counts as acknowledged when its PUBACK arrives. Each connection has a window of
messages in flight; a lost connection fails its in-flight messages (the devices send them
again) and reconnects after a capped, jittered, doubling delay. MQTT 5 by default;
``protocol="3.1.1"`` for brokers without MQTT 5 (amqtt), with a clean session either way.
"""

from __future__ import annotations

import asyncio
import uuid
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from core.backoff import Backoff
from core.errors import ConfigError as CoreConfigError
from core.mqtt_link import MqttLink, new_client
from core.mqtt_url import BrokerAddress
from core.mqtt_url import parse_mqtt_url as parse_broker_url
from core.settings import MqttProtocol
from simulator.errors import ConfigError, DriverError
from simulator.messages import Message

__all__ = ["BrokerAddress", "MqttDriver", "parse_mqtt_url"]

_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 5.0


def parse_mqtt_url(url: str) -> BrokerAddress:
    """Parse ``mqtt://[user[:pass]@]host[:port]`` or ``mqtts://...``; ConfigError if not."""
    try:
        return parse_broker_url(url)
    except CoreConfigError as exc:
        raise ConfigError(str(exc)) from exc


class _Link:
    """One broker connection with its window of in-flight messages."""

    def __init__(
        self, address: BrokerAddress, client_id: str, window: int, protocol: MqttProtocol
    ) -> None:
        self.address = address
        self.window = asyncio.Semaphore(window)
        self._loop = asyncio.get_running_loop()
        self._in_flight: dict[int, asyncio.Future[None]] = {}
        client = new_client(address, client_id, protocol=protocol, persistent=False)
        client.max_inflight_messages_set(window)
        client.max_queued_messages_set(window)
        client.on_publish = self._on_publish
        self.client = client
        self._link = MqttLink(
            client,
            address,
            name=client_id,
            backoff=Backoff(_BACKOFF_FIRST_S, _BACKOFF_MAX_S),
            on_lost=self._fail_in_flight,
        )
        self.connected = self._link.connected
        self._link.start()

    async def publish(self, topic: str, payload: bytes, wait_s: float) -> None:
        """Publish at QoS 1 and wait for the PUBACK; DriverError if it does not come."""
        async with self.window:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation
            # that arrives as the awaited event does, and a stopped fleet would go on.
            try:
                async with asyncio.timeout(wait_s):
                    await self.connected.wait()
            except TimeoutError as exc:
                raise DriverError(f"not connected to {self.address!r}") from exc
            info = self.client.publish(topic, payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise DriverError(f"publish failed: {mqtt.error_string(info.rc)}")
            done = self._loop.create_future()
            self._in_flight[info.mid] = done
            try:
                async with asyncio.timeout(wait_s):
                    await done
            except TimeoutError as exc:
                raise DriverError(f"no PUBACK within {wait_s:g} s") from exc
            finally:
                self._in_flight.pop(info.mid, None)

    async def close(self) -> None:
        """Disconnect and stop reconnecting."""
        await self._link.close()

    def _fail_in_flight(self) -> None:
        lost, self._in_flight = self._in_flight, {}
        for done in lost.values():
            if not done.done():
                done.set_exception(DriverError(f"connection to {self.address!r} lost"))

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        done = self._in_flight.pop(mid, None)
        if done is None or done.done():
            return
        if reason.is_failure:
            done.set_exception(DriverError(f"broker refused the message: {reason}"))
        else:
            done.set_result(None)


class MqttDriver:
    """Publishes the fleet's messages over ``connections`` broker connections."""

    def __init__(
        self,
        mqtt_url: str,
        *,
        connections: int = 1,
        window: int = 500,
        ack_timeout_s: float = 30.0,
        protocol: MqttProtocol = "5",
    ) -> None:
        self.address = parse_mqtt_url(mqtt_url)
        self.protocol: MqttProtocol = protocol
        self.connections = max(1, connections)
        self.window = window
        self.ack_timeout_s = ack_timeout_s
        self._links: list[_Link] = []

    async def __aenter__(self) -> Self:
        if self._links:
            raise DriverError("the MQTT driver is already open")
        tag = uuid.uuid4().hex[:8]
        self._links = [
            _Link(self.address, f"sim-{tag}-{i}", self.window, self.protocol)
            for i in range(self.connections)
        ]
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        links, self._links = self._links, []
        await asyncio.gather(*(link.close() for link in links))

    async def wait_connected(self, timeout_s: float) -> None:
        """Wait until every connection is up; DriverError naming the broker if not."""
        try:
            async with asyncio.timeout(timeout_s):
                for link in self._links:
                    await link.connected.wait()
        except TimeoutError as exc:
            raise DriverError(f"cannot connect to the MQTT broker {self.address!r}") from exc

    async def send(self, device_index: int, device_id: str, message: Message) -> None:
        """Publish ``message`` for the device and wait for its PUBACK."""
        if not self._links:
            raise DriverError("the MQTT driver is not open")
        topic = f"telemetry/{device_id}" + ("/senml" if message.encoding == "senml" else "")
        link = self._links[device_index % len(self._links)]
        await link.publish(topic, message.payload, self.ack_timeout_s)
