"""MQTT driver: a small pool of paho clients, driven by the asyncio loop, for the fleet.

Thousands of devices share a few connections (one per ``devices_per_connection``), so no
paho network thread runs per device: like the ingest's consumer, each client's socket is
registered with the event loop (``loop_read``/``loop_write`` on readiness, ``loop_misc``
every second). A device's message goes to ``telemetry/{device_id}`` (``/senml`` for SenML)
at QoS 1 and counts as acknowledged when its PUBACK arrives. Each connection has a window
of messages in flight; a lost connection fails its in-flight messages (the devices send
them again) and reconnects after a capped, jittered, doubling delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from simulator.errors import ConfigError, DriverError
from simulator.messages import Message

__all__ = ["BrokerAddress", "MqttDriver", "parse_mqtt_url"]

_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 5.0
_CONNECT_WAIT_S = 15.0
_KEEPALIVE_S = 30


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is and how to log in, from ``MQTT_URL``."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    def __repr__(self) -> str:  # never print the password
        user = f"{self.username}@" if self.username else ""
        return f"BrokerAddress({'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port})"


def parse_mqtt_url(url: str) -> BrokerAddress:
    """Parse ``mqtt://[user[:pass]@]host[:port]`` or ``mqtts://...``; ConfigError if not."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        shown = url.rsplit("@", maxsplit=1)[-1]  # never echo a password
        raise ConfigError(f"MQTT URL must look like mqtt://host:1883, not {shown!r}")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        parts.hostname,
        parts.port or (8883 if tls else 1883),
        tls,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


class _Link:
    """One broker connection with its window of in-flight messages."""

    def __init__(self, address: BrokerAddress, client_id: str, window: int) -> None:
        self.address = address
        self.window = asyncio.Semaphore(window)
        self.connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._in_flight: dict[int, asyncio.Future[None]] = {}
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
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
        self.client.on_socket_open = self._on_socket_open
        self.client.on_socket_close = self._on_socket_close
        self.client.on_socket_register_write = self._on_socket_register_write
        self.client.on_socket_unregister_write = self._on_socket_unregister_write
        self._tasks = [
            asyncio.create_task(self._keep_connected(), name=f"mqtt-link-{client_id}"),
            asyncio.create_task(self._misc(), name=f"mqtt-misc-{client_id}"),
        ]

    async def publish(self, topic: str, payload: bytes, wait_s: float) -> None:
        """Publish at QoS 1 and wait for the PUBACK; DriverError if it does not come."""
        async with self.window:
            try:
                await asyncio.wait_for(self.connected.wait(), wait_s)
            except TimeoutError as exc:
                raise DriverError(f"not connected to {self.address!r}") from exc
            info = self.client.publish(topic, payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise DriverError(f"publish failed: {mqtt.error_string(info.rc)}")
            done = self._loop.create_future()
            self._in_flight[info.mid] = done
            try:
                await asyncio.wait_for(done, wait_s)
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
        self._drop_socket()

    async def _keep_connected(self) -> None:
        delay = _BACKOFF_FIRST_S
        while not self._closed:
            self._lost.clear()
            try:
                await self._loop.run_in_executor(None, self._connect)
                await asyncio.wait_for(self.connected.wait(), _CONNECT_WAIT_S)
            except (OSError, ssl.SSLError, TimeoutError):
                self._drop_socket()
            if self.connected.is_set():
                delay = _BACKOFF_FIRST_S
                await self._lost.wait()
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311  (jitter)
            delay = min(delay * 2, _BACKOFF_MAX_S)

    def _connect(self) -> None:
        self.client.connect(
            self.address.host, self.address.port, keepalive=_KEEPALIVE_S, clean_start=True
        )

    def _drop_socket(self) -> None:
        sock = self.client.socket()
        if sock is not None:
            self._on_socket_close(self.client, None, sock)
            with contextlib.suppress(OSError):
                sock.close()

    async def _misc(self) -> None:
        while True:
            await asyncio.sleep(1)
            if self.client.socket() is not None:
                self.client.loop_misc()

    # --- paho callbacks (on the event loop, but for socket opening) ----------------------

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

    def _on_socket_open(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        # Called from the connect executor thread: register the reader on the loop.
        self._loop.call_soon_threadsafe(self._add_reader, sock)

    def _add_reader(self, sock: socket.socket) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.add_reader(sock, self.client.loop_read)

    def _on_socket_close(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)

    def _on_socket_register_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._loop.call_soon_threadsafe(self._add_writer, sock)

    def _add_writer(self, sock: socket.socket) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.add_writer(sock, self.client.loop_write)

    def _on_socket_unregister_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_writer(sock)


class MqttDriver:
    """Publishes the fleet's messages over ``connections`` broker connections."""

    def __init__(
        self,
        mqtt_url: str,
        *,
        connections: int = 1,
        window: int = 500,
        ack_timeout_s: float = 30.0,
    ) -> None:
        self.address = parse_mqtt_url(mqtt_url)
        self.connections = max(1, connections)
        self.window = window
        self.ack_timeout_s = ack_timeout_s
        self._links: list[_Link] = []

    async def __aenter__(self) -> Self:
        if self._links:
            raise DriverError("the MQTT driver is already open")
        tag = uuid.uuid4().hex[:8]
        self._links = [
            _Link(self.address, f"sim-{tag}-{i}", self.window) for i in range(self.connections)
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
