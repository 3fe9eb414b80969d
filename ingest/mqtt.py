"""MQTT intake's receiving side: the broker's telemetry, in groups, acknowledged after commit.

:class:`MqttConsumer` keeps one paho-mqtt 2.x client (MQTT 5 or 3.1.1) connected through
:class:`core.mqtt_link.MqttLink` and subscribes on every connection to
``$share/<group>/telemetry/#`` and ``$share/<group>/attributes/+`` at QoS 1 (without the
prefix when there is no group), with a persistent session and manual acknowledgement:
:meth:`MqttConsumer.ack` sends a PUBACK only when the caller says the message is
committed (or dead-lettered). Devices publish their attributes retained: a plain
subscription gets every device's last report when it is made (with MQTT 5, only when the
session does not have it already), a shared one only what is published while it exists.

The inbox between the socket and :meth:`MqttConsumer.receive` is bounded by
``mqtt_receive_window``. With MQTT 5 that is the Receive Maximum we announce, so the broker
never sends more than that unacknowledged; MQTT 3.1.1 has no such limit to announce, so
when the inbox is full the socket is left unread until it has room (TCP pushes back).

``MQTT_PROTOCOL=3.1.1`` is for brokers without MQTT 5 (amqtt): a plain subscription (no
shared subscriptions), clean_session=False for a persistent session, the same manual
acknowledgement, no CONNECT properties. Acknowledgements of messages received on an earlier
connection are dropped: the broker redelivers those from the resumed session, and the
redelivery is deduplicated.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers, writeBytes
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from core import paho_speedups
from core.backoff import Backoff
from core.lifecycle import AsyncResource
from core.mqtt_link import LinkState, MqttLink, new_client
from core.mqtt_url import parse_mqtt_url
from core.paho_asyncio import PahoLoopBridge
from ingest.metrics import METRICS
from ingest.settings import MqttSettings

__all__ = [
    "ANNOUNCE_TOPIC",
    "RECEIPTS_IN_FLIGHT",
    "ChunkReadBridge",
    "Delivery",
    "JoinedWritesBridge",
    "MqttConsumer",
    "OutgoingReceipt",
    "publish_receipts",
]

log = logging.getLogger(__name__)

# Short: after a broker restart, what devices publish before we subscribe again is lost by
# Mosquitto 2.0 for a shared subscription (docs/reliability.md): come back quickly.
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 5.0
_MAX_GROUP = 256  # messages handed out at once
_READ_BURST = 64  # packets read per wake-up of the socket
#: paho's bound on our own QoS 1 publishes (receipts) in flight: none. With a bound, paho
#: walks every message it holds on each PUBACK (the largest cost of a receipt); it never
#: applies the broker's Receive Maximum either way, and Mosquitto answers QoS 1 at once.
RECEIPTS_IN_FLIGHT = 0
#: Retained b"1": this platform sends commit receipts (ingest.receipts).
ANNOUNCE_TOPIC = "platform/receipts"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One received message, what acknowledging it needs, and where its receipt goes.

    ``response_topic`` and ``correlation`` are the MQTT 5 properties a device sets to ask
    for a commit receipt (:mod:`ingest.receipts`); None otherwise.
    """

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    response_topic: str | None = None
    correlation: bytes | None = None


_NO_PROPERTIES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
_CORRELATION_DATA = 9  # the property's identifier (MQTT 5, 2.2.2.2)


class _CorrelationOnly(Properties):
    """PUBLISH properties holding only Correlation Data, packed once by paho's own encoders.

    paho builds its property tables in every ``Properties()`` and looks each name up again
    in ``pack()``: together most of a receipt's cost. This one shares the tables of an
    empty instance (paho only reads them) and packs at construction, to the same bytes.
    """

    def __init__(self, correlation: bytes) -> None:
        fields = self.__dict__
        fields.update(_NO_PROPERTIES.__dict__)
        fields["CorrelationData"] = correlation
        data = bytes((_CORRELATION_DATA,)) + writeBytes(correlation)  # type: ignore[no-untyped-call]
        fields["_packed"] = VariableByteIntegers.encode(len(data)) + data  # type: ignore[no-untyped-call]

    def pack(self) -> bytes:
        """Return the properties as they go on the wire."""
        packed: bytes = self.__dict__["_packed"]
        return packed


#: A commit receipt to publish: its topic, the correlation data to echo, its body.
OutgoingReceipt = tuple[str, bytes | None, bytes]


def publish_receipts(client: mqtt.Client, receipts: Sequence[OutgoingReceipt]) -> None:
    """Publish receipts at QoS 1, each with its correlation data (MQTT 5).

    paho does not keep them for resending (:func:`core.paho_speedups.publish_untracked`,
    with a checked paho): a receipt lost with the connection is recovered by the device,
    which sends its message again when no receipt comes.
    """
    untracked = paho_speedups.checked()
    for topic, correlation, body in receipts:
        props = _NO_PROPERTIES if correlation is None else _CorrelationOnly(correlation)
        if untracked:
            paho_speedups.publish_untracked(client, topic, body, props)
        else:
            client.publish(topic, body, qos=1, properties=props)
    METRICS.receipts_sent.inc(len(receipts))  # once: each inc locks a shared file


class JoinedWritesBridge(PahoLoopBridge):
    """Sends what paho queued while the socket was busy in one write: PUBACKs, receipts.

    With a checked paho version (:func:`core.paho_speedups.join_writes`); paho's own
    writes otherwise.
    """

    def __init__(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(client, loop)
        self._join = paho_speedups.checked()

    def write(self) -> None:
        """Join the queued packets that may be joined, then let paho write."""
        if self._join:
            paho_speedups.join_writes(self.client)
        self.client.loop_write()


class ChunkReadBridge(JoinedWritesBridge):
    """Also reads the socket a chunk at a time, and every packet the chunk holds at once.

    For a connection that receives a packet for every message (the receipts' PUBACKs): one
    turn of the event loop and three ``recv`` calls a packet otherwise. With a checked paho
    version (:class:`core.paho_speedups.ReadBuffer`); one packet a turn otherwise. Bytes
    held in the buffer are not announced by the selector: while it holds some after a
    burst, another burst is scheduled at once.
    """

    def __init__(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(client, loop)
        self._buffer = paho_speedups.ReadBuffer(client) if self._join else None

    def read(self) -> None:
        """Read the packets the socket and the buffer hold, up to a burst of them."""
        buffer = self._buffer
        for _ in range(_READ_BURST):
            self.client.loop_read()
            if buffer is None or not buffer.pending or self._paused:
                break
        self._read_held()

    def resume_reading(self) -> None:
        """Read the socket again, and what the buffer held when reading was paused."""
        super().resume_reading()
        self._read_held()

    def _read_held(self) -> None:
        """Schedule a burst for what the read buffer holds, when reading is on."""
        buffer = self._buffer
        if (
            buffer is not None
            and not self._paused
            and self.client.socket() is not None
            and buffer.pending
        ):
            self.loop.call_soon(self.read)

    def _opened(self, sock: socket.socket) -> None:
        if self._buffer is not None:
            self._buffer.clear()  # nothing from an earlier connection
        super()._opened(sock)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self._buffer is not None:
            self._buffer.clear()
        super()._on_socket_close(client, userdata, sock)


class _BurstBridge(ChunkReadBridge):
    """Reads the messages waiting on the socket in one turn of the loop, not one a turn.

    paho's ``loop_read`` reads one packet, and a turn of the event loop per message is a
    large share of a message's cost. Reading stops at the first call that delivers no
    message (nothing left, a partial packet, or another kind of packet), or when the
    consumer paused reading because its inbox is full; what the read buffer still holds is
    read on the next turn.
    """

    def __init__(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(client, loop)
        self.messages = 0  # counted by the consumer's on_message
        paho_speedups.deliver_directly(client)

    def read(self) -> None:
        for _ in range(_READ_BURST):
            before = self.messages
            self.client.loop_read()
            if self.messages == before or self._paused:
                break
        self._read_held()


class MqttConsumer(AsyncResource):
    """Receives telemetry from the broker; :meth:`receive` hands it out in arrival order."""

    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        self.settings = settings
        self.client_id = client_id
        address = parse_mqtt_url(settings.mqtt_url)
        mqtt5 = settings.mqtt_protocol == "5"
        client = new_client(
            address,
            client_id,
            protocol=settings.mqtt_protocol,
            persistent=True,
            ca_file=settings.mqtt_ca_file,
        )
        client.manual_ack_set(on=True)
        client.max_inflight_messages_set(RECEIPTS_IN_FLIGHT)
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        paho_speedups.skip_untracked_pubacks(client)  # the PUBACKs of its receipts
        self._link = MqttLink(
            client,
            address,
            name=client_id,
            backoff=Backoff(_BACKOFF_FIRST_S, _BACKOFF_MAX_S),
            connect_properties=self._connect_properties() if mqtt5 else None,
            clean_start=False,
            on_connected=self._subscribe,
            on_lost=self._lost,
            bridge_factory=_BurstBridge,
        )
        self._inbox: collections.deque[Delivery] = collections.deque()
        self._inbox_max = settings.mqtt_receive_window
        self._arrived = asyncio.Event()
        self._subscribe_mid: int | None = None
        self._subscribed = False

    @property
    def address(self) -> str:
        """The broker, for log lines (never with the password)."""
        return repr(self._link.address)

    @property
    def connected(self) -> bool:
        """Whether the session with the broker is up."""
        return self._link.state is LinkState.CONNECTED

    @property
    def subscribed(self) -> bool:
        """Whether the broker has granted this connection's subscription (SUBACK)."""
        return self._subscribed and self.connected

    def readiness(self) -> str:
        """``ok`` once subscribed, else where the connection stands (for ``/readyz``)."""
        if self.subscribed:
            return "ok"
        return "subscribing" if self.connected else self._link.state.value

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the first connection."""
        return await self._link.wait_connected(timeout_s)

    async def _open(self) -> None:
        self._link.start()

    async def _close(self) -> None:
        await self._link.close()
        METRICS.mqtt_connected.set(0)

    async def receive(self) -> list[Delivery]:
        """Wait for messages and return those that arrived together (in order, at most 256)."""
        self._require_open()
        inbox = self._inbox
        while not inbox:
            self._arrived.clear()
            await self._arrived.wait()
        if len(inbox) < _MAX_GROUP:
            # What arrives while the group forms is read on the next turn: give the reader
            # that turn, so a burst becomes one group, not several.
            await asyncio.sleep(0)
        group = [inbox.popleft() for _ in range(min(len(inbox), _MAX_GROUP))]
        if len(inbox) < self._inbox_max:
            self._link.bridge.resume_reading()
        return group

    def ack(self, deliveries: Iterable[Delivery]) -> None:
        """Acknowledge ``deliveries``, except those that came on an earlier connection."""
        acked = stale = 0
        generation, connected = self._link.generation, self.connected
        client = self._link.client
        for delivery in deliveries:
            if delivery.qos == 0:
                continue
            if delivery.generation != generation or not connected:
                stale += 1
                continue
            client.ack(delivery.mid, delivery.qos)
            acked += 1
        if stale:
            METRICS.mqtt_stale_acks.inc(stale)
        if acked:
            METRICS.mqtt_acks.inc(acked)

    def send_receipts(self, receipts: Sequence[OutgoingReceipt]) -> None:
        """Publish commit receipts at QoS 1; skipped while disconnected (devices resend)."""
        if self.connected:
            publish_receipts(self._link.client, receipts)

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.mqtt_session_expiry_s
        props.ReceiveMaximum = self.settings.mqtt_receive_window
        return props

    # --- paho callbacks (run on the event loop) -------------------------------------------

    def _subscribe(self, client: mqtt.Client, session_present: bool) -> None:
        METRICS.mqtt_connected.set(1)
        METRICS.mqtt_connects.inc()
        group = self.settings.mqtt_share_group
        # No group: a plain subscription, which Mosquitto 2.0 restores across its restarts
        # (a shared one it does not; docs/reliability.md). For a single consumer only.
        prefix = f"$share/{group}/" if group else ""
        topics = [f"{prefix}telemetry/#", f"{prefix}attributes/+"]
        self._subscribed = False
        if self.settings.mqtt_protocol == "5":
            # Retained reports again only for a new subscription, not on every reconnect.
            options = SubscribeOptions(
                qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
            )
            _, self._subscribe_mid = client.subscribe([(t, options) for t in topics])
        else:
            _, self._subscribe_mid = client.subscribe([(t, 1) for t in topics])
        if self.settings.mqtt_protocol == "5":
            # Devices wait for commit receipts only where the platform says it sends them.
            client.publish(ANNOUNCE_TOPIC, b"1", qos=1, retain=True)
        log.info(
            "connected to MQTT broker %s as %s (session %s), subscribed to %s",
            self.address,
            self.client_id,
            "resumed" if session_present else "new",
            " and ".join(topics),
        )

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [reason for reason in reasons if reason.is_failure]
        if refused:
            log.error(
                "MQTT broker %s refused the subscription of %s: %s (check the broker's ACL for"
                " the ingest's account)",
                self.address,
                self.client_id,
                refused[0],
            )
            return
        self._subscribed = True

    def _lost(self) -> None:
        self._subscribed = False
        METRICS.mqtt_connected.set(0)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        bridge = self._link.bridge
        assert isinstance(bridge, _BurstBridge)
        bridge.messages += 1
        props = msg.properties
        response = getattr(props, "ResponseTopic", None) if props is not None else None
        self._inbox.append(
            Delivery(
                msg.topic,
                bytes(msg.payload),
                msg.mid,
                msg.qos,
                self._link.generation,
                response,
                None if response is None else getattr(props, "CorrelationData", None),
            )
        )
        self._arrived.set()
        if len(self._inbox) >= self._inbox_max:
            bridge.pause_reading()
