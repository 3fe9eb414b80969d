"""MQTT driver: a small pool of paho clients, driven by the asyncio loop, for the fleet.

Thousands of devices share a few connections (one per ``devices_per_connection``), so no
paho network thread runs per device: like the ingest's consumer, each client's socket is
registered with the event loop (``loop_read``/``loop_write`` on readiness, ``loop_misc``
every second). A device's message goes to ``telemetry/{device_id}`` (``/senml`` for SenML)
at QoS 1 and counts as acknowledged when its PUBACK arrives. Each connection has a window
of messages in flight; a lost connection fails its in-flight messages (the devices send
them again) and reconnects after a capped, jittered, doubling delay. MQTT 5 by default;
``protocol="3.1.1"`` for brokers without MQTT 5 (amqtt), with a clean session either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import uuid
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from ingest.errors import ConfigError as IngestConfigError
from ingest.mqtt import BrokerAddress
from ingest.mqtt import parse_mqtt_url as parse_broker_url
from ingest.paho_asyncio import PahoLoopBridge
from ingest.settings import MqttProtocol
from simulator.errors import ConfigError, DriverError
from simulator.messages import Message

__all__ = ["BrokerAddress", "MqttDriver", "parse_mqtt_url"]

_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 5.0
_CONNECT_WAIT_S = 15.0
_KEEPALIVE_S = 30


def parse_mqtt_url(url: str) -> BrokerAddress:
    """Parse ``mqtt://[user[:pass]@]host[:port]`` or ``mqtts://...``; ConfigError if not."""
    try:
        return parse_broker_url(url)
    except IngestConfigError as exc:
        raise ConfigError(str(exc)) from exc


class _Link:
    """One broker connection with its window of in-flight messages."""

    def __init__(
        self, address: BrokerAddress, client_id: str, window: int, protocol: MqttProtocol
    ) -> None:
        self.address = address
        self.window = asyncio.Semaphore(window)
        self.connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._in_flight: dict[int, asyncio.Future[None]] = {}
        self._mqtt5 = protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self._mqtt5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if self._mqtt5 else True,
            reconnect_on_failure=False,
        )
        self.client.max_inflight_messages_set(window)
        self.client.max_queued_messages_set(window)
        if address.username:
            self.client.username_pw_set(address.username, address.password)
        if address.tls:
            self.client.tls_set_context(ssl.create_default_context())
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self._bridge = PahoLoopBridge(self.client, self._loop)
        self._tasks = [
            asyncio.create_task(self._keep_connected(), name=f"mqtt-link-{client_id}"),
            asyncio.create_task(self._bridge.housekeeping(), name=f"mqtt-misc-{client_id}"),
        ]

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
        """Disconnect and stop the link's tasks."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.client.is_connected():
            self.client.disconnect()
            with contextlib.suppress(OSError):
                self.client.loop_write()
        self._bridge.drop_socket()

    async def _keep_connected(self) -> None:
        delay = _BACKOFF_FIRST_S
        while not self._closed:
            self._lost.clear()
            try:
                await self._loop.run_in_executor(None, self._connect)
                async with asyncio.timeout(_CONNECT_WAIT_S):
                    await self.connected.wait()
            except (OSError, ssl.SSLError, TimeoutError):
                self._bridge.drop_socket()
            if self.connected.is_set():
                delay = _BACKOFF_FIRST_S
                await self._lost.wait()
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311  (jitter)
            delay = min(delay * 2, _BACKOFF_MAX_S)

    def _connect(self) -> None:
        host, port = self.address.host, self.address.port
        if self._mqtt5:
            self.client.connect(host, port, keepalive=_KEEPALIVE_S, clean_start=True)
        else:  # MQTT 3.1.1 has its clean session set on the client
            self.client.connect(host, port, keepalive=_KEEPALIVE_S)

    # --- paho callbacks (on the event loop) ----------------------------------------------

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            self._lost.set()
            return
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, _r: ReasonCode, _p: Any) -> None:
        self.connected.clear()
        self._lost.set()
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
