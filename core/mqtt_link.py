"""One paho-mqtt client kept connected by an explicit state machine on the asyncio loop.

:class:`LinkState` goes DISCONNECTED → CONNECTING → CONNECTED and, after a refusal, a
failed attempt or a lost connection, through BACKOFF (a capped, jittered, doubling delay
from :class:`core.backoff.Backoff`, reset by every successful connection) back to
CONNECTING; CLOSED ends it. The TCP (and TLS) handshake blocks, so it runs in an executor;
reads, writes and paho's callbacks run on the loop (:mod:`core.paho_asyncio`).

The owner builds the paho client (:func:`new_client`), sets what it needs on it (manual
acks, in-flight limits, ``on_message``...) and hears of each connection through
``on_connected`` (subscribe there: a resumed session is not enough for shared
subscriptions) and of each loss through ``on_lost``. :attr:`MqttLink.generation` counts
connections, so that acknowledgements of messages from an earlier one can be told apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.backoff import Backoff
from core.mqtt_url import BrokerAddress
from core.paho_asyncio import PahoLoopBridge
from core.settings import MqttProtocol

__all__ = ["LinkState", "MqttLink", "new_client"]

log = logging.getLogger(__name__)

_CONNACK_TIMEOUT_S = 15.0
_KEEPALIVE_S = 30

BridgeFactory = Callable[[mqtt.Client, asyncio.AbstractEventLoop], PahoLoopBridge]


class LinkState(enum.Enum):
    """Where the connection to the broker stands."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    CLOSED = "closed"


def new_client(
    address: BrokerAddress,
    client_id: str,
    *,
    protocol: MqttProtocol,
    persistent: bool,
    ca_file: str | None = None,
) -> mqtt.Client:
    """Build a paho client for ``address`` with its credentials and TLS, not connected yet.

    ``persistent``: the broker keeps the session while we are away (MQTT 3.1.1 sets that
    on the client; MQTT 5 in the CONNECT, see :class:`MqttLink`).
    """
    mqtt5 = protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if mqtt5 else MQTTProtocolVersion.MQTTv311,
        clean_session=None if mqtt5 else not persistent,
        reconnect_on_failure=False,
    )
    if address.username:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set_context(ssl.create_default_context(cafile=ca_file))
    return client


def _ignore_connected(_client: mqtt.Client, _session_present: bool) -> None:
    return None


def _ignore_lost() -> None:
    return None


class MqttLink:
    """Keeps ``client`` connected to ``address`` until :meth:`close`."""

    def __init__(
        self,
        client: mqtt.Client,
        address: BrokerAddress,
        *,
        name: str,
        backoff: Backoff,
        connect_properties: Properties | None = None,
        clean_start: bool = True,
        on_connected: Callable[[mqtt.Client, bool], None] = _ignore_connected,
        on_lost: Callable[[], None] = _ignore_lost,
        bridge_factory: BridgeFactory = PahoLoopBridge,
    ) -> None:
        self.client = client
        self.address = address
        self.name = name
        self.state = LinkState.DISCONNECTED
        self.generation = 0
        self.connected = asyncio.Event()
        self._backoff = backoff
        self._mqtt5 = client.protocol == MQTTProtocolVersion.MQTTv5
        self._connect_options: dict[str, Any] = (
            {"clean_start": clean_start, "properties": connect_properties} if self._mqtt5 else {}
        )
        self._on_connected = on_connected
        self._on_lost = on_lost
        self._bridge_factory = bridge_factory
        self._bridge: PahoLoopBridge | None = None
        self._lost = asyncio.Event()
        self._answered = asyncio.Event()  # CONNACK (or a refusal) for the current attempt
        self._run_task: asyncio.Task[None] | None = None
        self._housekeeping_task: asyncio.Task[None] | None = None
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect

    @property
    def bridge(self) -> PahoLoopBridge:
        """The socket bridge (exists once :meth:`start` has run)."""
        assert self._bridge is not None, "start() first"
        return self._bridge

    def start(self) -> None:
        """Start connecting in the background."""
        self._bridge = self._bridge_factory(self.client, asyncio.get_running_loop())
        self._run_task = asyncio.create_task(self._run(), name=f"mqtt-link-{self.name}")
        self._housekeeping_task = asyncio.create_task(
            self._bridge.housekeeping(), name=f"mqtt-misc-{self.name}"
        )

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a connection; return whether there is one."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.connected.wait()
        return self.state is LinkState.CONNECTED

    async def close(self) -> None:
        """Disconnect (a persistent session stays at the broker) and stop reconnecting."""
        self.state = LinkState.CLOSED
        tasks = [t for t in (self._run_task, self._housekeeping_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.client.is_connected():
            self.client.disconnect()
            with contextlib.suppress(OSError):
                self.client.loop_write()  # let the DISCONNECT leave before the socket closes
        if self._bridge is not None:
            self._bridge.drop_socket()
        self.connected.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed():
            self.state = LinkState.CONNECTING
            self._lost.clear()
            self._answered.clear()
            try:
                await loop.run_in_executor(None, self._connect)
                async with asyncio.timeout(_CONNACK_TIMEOUT_S):
                    await self._answered.wait()
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                log.warning("cannot connect to the MQTT broker %r: %s", self.address, exc)
                self.bridge.drop_socket()
            if self.state is LinkState.CONNECTED:
                self._backoff.reset()
                await self._lost.wait()
                if self._closed():
                    return
                log.warning("lost the connection to the MQTT broker %r; reconnecting", self.address)
            self.state = LinkState.BACKOFF
            await self._backoff.sleep()

    def _closed(self) -> bool:
        # A method, not an inline test: the state changes while _run awaits.
        return self.state is LinkState.CLOSED

    def _connect(self) -> None:
        self.client.connect(
            self.address.host, self.address.port, keepalive=_KEEPALIVE_S, **self._connect_options
        )

    # --- paho callbacks (run on the event loop) -------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _u: Any, flags: mqtt.ConnectFlags, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            hint = (
                "the broker does not speak MQTT 5 (amqtt, say): use MQTT 3.1.1"
                if self._mqtt5 and reason == "Unsupported protocol version"
                else "check the credentials in the MQTT URL and the broker's ACL"
            )
            log.error("MQTT broker %r refused %s: %s (%s)", self.address, self.name, reason, hint)
            self._lost.set()
            self._answered.set()
            return
        self.generation += 1
        self.state = LinkState.CONNECTED
        self.connected.set()
        self._on_connected(client, flags.session_present)
        self._answered.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if self.state is not LinkState.CLOSED:
            self.state = LinkState.DISCONNECTED
            log.info("MQTT link %s disconnected: %s", self.name, reason)
        self.connected.clear()
        self._lost.set()
        self._answered.set()
        self._on_lost()
