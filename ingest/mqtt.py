"""MQTT intake: a paho-mqtt 2.x (MQTT 5 or 3.1.1) client driven by the asyncio event loop.

The client joins the shared subscription ``$share/<group>/telemetry/#`` at QoS 1 with a
persistent session and manual acknowledgement: a PUBACK is sent only when the batch that
holds the message has committed (or its dead letter has). ``mqtt_receive_window`` is the
Receive Maximum we announce, so at most that many messages are unacknowledged at once; a
full pipeline therefore slows the broker down instead of growing memory.

``MQTT_PROTOCOL=3.1.1`` is for brokers without MQTT 5 (amqtt): a plain subscription to
``telemetry/#`` (MQTT 3.1.1 has no shared subscriptions), clean_session=False for a
persistent session, the same manual acknowledgement, and no CONNECT properties. With no
Receive Maximum to announce, the broker's own in-flight limit governs the flow (Mosquitto's
``max_inflight_messages``; amqtt has none), and the session lasts as long as the broker
keeps it.

Connection handling is a small state machine (:class:`LinkState`): DISCONNECTED →
CONNECTING → CONNECTED, and back through BACKOFF after a failure, waiting a capped,
jittered, doubling delay that resets after a successful connection. Acknowledgements of
messages received on an earlier connection are dropped: the broker redelivers those from
the resumed session, and the redelivery is deduplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ingest.errors import ConfigError
from ingest.metrics import METRICS
from ingest.paho_asyncio import PahoLoopBridge
from ingest.settings import MqttSettings

__all__ = ["BrokerAddress", "Delivery", "LinkState", "MqttConsumer", "parse_mqtt_url"]

log = logging.getLogger(__name__)

_BACKOFF_FIRST_S = 0.5
# Short: after a broker restart, what devices publish before we subscribe again is lost
# by Mosquitto 2.0 (docs/ingest.md), so the consumer must come back quickly.
_BACKOFF_MAX_S = 5.0
_KEEPALIVE_S = 30


class LinkState(enum.Enum):
    """Where the connection to the broker stands."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is and how to log in, parsed from ``MQTT_URL``."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    def __repr__(self) -> str:  # never print the password
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        return f"BrokerAddress({scheme}://{user}{self.host}:{self.port})"


def parse_mqtt_url(url: str) -> BrokerAddress:
    """Parse ``mqtt://[user[:pass]@]host[:port]`` or ``mqtts://...``; ConfigError if not."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(
            f"MQTT_URL must look like mqtt://host:1883 or mqtts://host:8883, not {parts.scheme}://…"
        )
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


@dataclass(frozen=True, slots=True)
class Delivery:
    """One received message and the means to acknowledge it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int


Handler = Callable[[list[Delivery]], Awaitable[None]]
_MAX_GROUP = 256  # messages handed to the handler at once
_READ_BURST = 64  # packets read per wake-up of the socket


class _BurstBridge(PahoLoopBridge):
    """Reads the messages waiting on the socket in one turn of the loop, not one a turn.

    paho's ``loop_read`` reads one packet, and a turn of the event loop per message is a
    large share of a message's cost. Reading stops at the first call that delivers no
    message (nothing left, a partial packet, or another kind of packet).
    """

    def __init__(
        self, client: mqtt.Client, loop: asyncio.AbstractEventLoop, received: dict[str, int]
    ) -> None:
        super().__init__(client, loop)
        self._received = received

    def _add_reader(self, sock: socket.socket) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.add_reader(sock, self._read_burst)

    def _read_burst(self) -> None:
        for _ in range(_READ_BURST):
            before = self._received["received"]
            self.client.loop_read()
            if self._received["received"] == before:
                return


class MqttConsumer:
    """Receives telemetry from the broker and hands it to ``handler``.

    ``handler`` gets the messages that arrived together (in order, at most 256) and must
    eventually pass each to :meth:`ack` (after commit); it only waits for room in the
    pipeline, never for the commit itself.
    """

    def __init__(self, settings: MqttSettings, client_id: str, handler: Handler) -> None:
        self.address = parse_mqtt_url(settings.mqtt_url)
        self.settings = settings
        self.client_id = client_id
        self._handler = handler
        self.state = LinkState.DISCONNECTED
        self._generation = 0
        self._inbox: asyncio.Queue[Delivery] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._bridge: PahoLoopBridge | None = None
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._answered = asyncio.Event()  # CONNACK (or a refusal) for the current attempt
        self._client = self._make_client()
        self.stats = dict.fromkeys(("received", "acked", "stale_acks", "connects"), 0)

    @property
    def _mqtt5(self) -> bool:
        return self.settings.mqtt_protocol == "5"

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self._mqtt5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if self._mqtt5 else False,
            reconnect_on_failure=False,
        )
        client.manual_ack_set(on=True)
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            context = ssl.create_default_context(cafile=self.settings.mqtt_ca_file)
            client.tls_set_context(context)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    @property
    def connected(self) -> bool:
        """Whether the session with the broker is up."""
        return self.state is LinkState.CONNECTED

    async def start(self) -> None:
        """Start connecting (in the background) and handling messages."""
        self._bridge = _BurstBridge(self._client, asyncio.get_running_loop(), self.stats)
        self._tasks = [
            asyncio.create_task(self._link(), name="mqtt-link"),
            asyncio.create_task(self._bridge.housekeeping(), name="mqtt-misc"),
            asyncio.create_task(self._dispatch(), name="mqtt-dispatch"),
        ]

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the first connection."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        return self.connected

    async def stop_intake(self) -> None:
        """Stop handing new messages to the handler (they stay unacknowledged)."""
        for task in self._tasks[2:]:
            task.cancel()
        await asyncio.gather(*self._tasks[2:], return_exceptions=True)

    async def close(self) -> None:
        """Disconnect, keeping the session at the broker so nothing unacknowledged is lost."""
        self.state = LinkState.CLOSED
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client.is_connected():
            self._client.disconnect()
            # Let the DISCONNECT leave before the socket closes.
            with contextlib.suppress(OSError):
                self._client.loop_write()
        METRICS.mqtt_connected.set(0)

    def ack(self, deliveries: Iterable[Delivery]) -> None:
        """Acknowledge ``deliveries``, except those that came on an earlier connection."""
        acked = stale = 0
        for delivery in deliveries:
            if delivery.qos == 0:
                continue
            if delivery.generation != self._generation or not self.connected:
                stale += 1
                continue
            self._client.ack(delivery.mid, delivery.qos)
            acked += 1
        self.stats["stale_acks"] += stale
        self.stats["acked"] += acked
        if acked:
            METRICS.mqtt_acks.inc(acked)

    # --- the state machine -------------------------------------------------------------

    def _closed(self) -> bool:
        return self.state is LinkState.CLOSED

    async def _link(self) -> None:
        delay = _BACKOFF_FIRST_S
        while not self._closed():
            self.state = LinkState.CONNECTING
            self._lost.clear()
            self._answered.clear()
            try:
                await self._connect()
                await asyncio.wait_for(self._answered.wait(), 15)
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                log.warning("cannot connect to the MQTT broker %r: %s", self.address, exc)
                if self._bridge is not None:
                    self._bridge.drop_socket()
            if self.state is LinkState.CONNECTED:
                delay = _BACKOFF_FIRST_S
                await self._lost.wait()
                if self._closed():
                    return
                log.warning("lost the MQTT broker connection; reconnecting")
            self.state = LinkState.BACKOFF
            pause = delay * random.uniform(0.5, 1.0)  # noqa: S311  (jitter, not crypto)
            await asyncio.sleep(pause)
            delay = min(delay * 2, _BACKOFF_MAX_S)

    async def _connect(self) -> None:
        options: dict[str, Any] = {}
        if self._mqtt5:  # 3.1.1: clean_session=False, set on the client, keeps the session
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.settings.mqtt_session_expiry_s
            props.ReceiveMaximum = self.settings.mqtt_receive_window
            options = {"clean_start": False, "properties": props}
        loop = asyncio.get_running_loop()
        # The TCP (and TLS) handshake blocks: keep it off the event loop.
        await loop.run_in_executor(
            None,
            lambda: self._client.connect(
                self.address.host, self.address.port, keepalive=_KEEPALIVE_S, **options
            ),
        )

    async def _dispatch(self) -> None:
        inbox = self._inbox
        while True:
            group = [await inbox.get()]
            while len(group) < _MAX_GROUP:
                if inbox.empty():
                    # What arrives while the group forms is read on the next turn: give the
                    # reader that turn, so a burst becomes one submission, not several.
                    await asyncio.sleep(0)
                    if inbox.empty():
                        break
                group.append(inbox.get_nowait())
            try:
                await self._handler(group)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Failed messages stay unacknowledged and come back after a reconnect.
                log.exception("handling %d MQTT messages failed", len(group))

    # --- paho callbacks (run on the event loop) -----------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            hint = (
                "a broker without MQTT 5, such as amqtt, needs MQTT_PROTOCOL=3.1.1"
                " and MQTT_SHARE_GROUP= (empty)"
                if self._mqtt5 and reason == "Unsupported protocol version"
                else "check MQTT_URL credentials and ACL"
            )
            log.error("MQTT broker refused the connection: %s (%s)", reason, hint)
            self._lost.set()
            self._answered.set()
            return
        self._generation += 1
        self.state = LinkState.CONNECTED
        self.stats["connects"] += 1
        METRICS.mqtt_connected.set(1)
        group = self.settings.mqtt_share_group
        # No group: a plain subscription, which Mosquitto 2.0 restores across its restarts
        # (a shared one it does not; docs/reliability.md). For a single consumer only.
        topic = f"$share/{group}/telemetry/#" if group else "telemetry/#"
        client.subscribe(topic, qos=1)
        log.info(
            "connected to MQTT broker %r as %s (session %s), subscribed to %s",
            self.address,
            self.client_id,
            "resumed" if flags.session_present else "new",
            topic,
        )
        self._connected.set()
        self._answered.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if self.state is not LinkState.CLOSED:
            self.state = LinkState.DISCONNECTED
            log.info("MQTT disconnected: %s", reason)
        METRICS.mqtt_connected.set(0)
        self._lost.set()
        self._answered.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.stats["received"] += 1
        self._inbox.put_nowait(
            Delivery(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._generation)
        )
