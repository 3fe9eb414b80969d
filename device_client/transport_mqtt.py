"""MQTT transport: QoS 1 batches to ``telemetry/{device_id}``, a window of them in flight.

A batch counts as sent when the platform's commit receipt for it arrives (MQTT 5
request/response, see docs/wire-protocol.md "Receipts"): each PUBLISH names the response
topic ``receipts/{device_id}/{client_id}`` and carries the batch's seq range as correlation
data, and the receipt says which items were stored and which refused. The broker's PUBACK
is only a hop: a broker that restarts before the platform has the message can lose it.
A batch without a receipt ``receipt_timeout_s`` after its PUBACK is published again (the
platform counts the second copy as duplicates).

``receipts = "auto"`` (the default) waits for receipts when the broker speaks MQTT 5 and the
platform announces them (the retained ``platform/receipts``); otherwise the PUBACK counts,
and one warning line says so. ``"on"`` always waits for receipts; ``"off"`` never does.

A fresh paho client is made for every connection and driven from the forwarder's thread
(``loop()``, no paho thread, no paho auto-reconnect). paho would otherwise re-send its own
copy of unacknowledged messages after a reconnect while we re-send them from the spool, and
the broker would see each twice. The spool is the only queue; ``clean_start`` is set and the
broker keeps no session for us.

The retained ``status/{device_id}`` topic says ``online`` after each connection and
``offline`` on a clean stop, and the broker publishes ``offline`` (the Last Will) when the
device vanishes without saying goodbye. After each connection the agent also publishes
its attributes (version, model...), retained, to ``attributes/{device_id}``.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device_client.config import MqttConfig, TlsConfig
from device_client.errors import BatchRejectedError, ResourceStateError, TransportError
from device_client.tls import build_ssl_context
from device_client.transport import Batch, Outcome, PollResult, Rejection

__all__ = [
    "ANNOUNCE_TOPIC",
    "MqttTransport",
    "attributes_topic",
    "receipts_topic",
    "status_topic",
    "telemetry_topic",
]

log = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"
#: Retained by the platform: b"1" when it sends commit receipts.
ANNOUNCE_TOPIC = "platform/receipts"
_CONNECT_TIMEOUT_S = 10.0
_ANNOUNCE_WAIT_S = 1.0
_GOODBYE_TIMEOUT_S = 2.0


def telemetry_topic(device_id: str) -> str:
    """Topic the device publishes readings to."""
    return f"telemetry/{device_id}"


def status_topic(device_id: str) -> str:
    """Retained topic holding ``online`` or ``offline``."""
    return f"status/{device_id}"


def attributes_topic(device_id: str) -> str:
    """Retained topic holding what the device reports about itself (a JSON object)."""
    return f"attributes/{device_id}"


def receipts_topic(device_id: str, client_id: str) -> str:
    """Where this agent's commit receipts arrive (the broker lets only it read them)."""
    return f"receipts/{device_id}/{client_id}"


@dataclass
class _Pending:
    """A batch published and not yet answered: by PUBACK, then by its receipt."""

    batch: Batch
    mid: int
    receipt: bool
    deadline: float | None = None  # set at the PUBACK, when a receipt is awaited


class MqttTransport:
    """Publishes batches at QoS 1; a batch counts as sent on its receipt (or PUBACK)."""

    name = "mqtt"
    connect_reaches_server = True

    def __init__(
        self, config: MqttConfig, tls: TlsConfig, device_id: str, attributes: bytes
    ) -> None:
        self.config = config
        self.device_id = device_id
        self.attributes = attributes
        self.topic = telemetry_topic(device_id)
        self.status = status_topic(device_id) if config.status_topic else None
        self.receipts = receipts_topic(device_id, config.client_id)
        self._ssl: ssl.SSLContext | None = build_ssl_context(tls) if config.use_tls else None
        self._protocol = MQTTProtocolVersion.MQTTv5
        self._client: mqtt.Client | None = None
        self._pending: dict[bytes, _Pending] = {}
        self._by_mid: dict[int, bytes] = {}
        self._outcomes: list[Outcome] = []
        self._error: TransportError | None = None
        self._connack: _Answers = _Answers()
        self._announced = False
        self._use_receipts = False
        self._warned = False
        self._closed = False

    # -- paho callbacks (run inside loop(), on the forwarder's thread) --------------

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self._connack.reason = reason

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _m: int, reasons: Any, _p: Any) -> None:
        self._connack.subscribed = True
        self._connack.refused = next((r for r in reasons if r.is_failure), None)

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if self._error is None:
            self._error = TransportError(f"connection to {self.config.url} lost: {reason}")

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        key = self._by_mid.pop(mid, None)
        pending = None if key is None else self._pending.get(key)
        if key is None or pending is None:
            return  # the status message, or a batch already answered
        if reason.is_failure:
            # Not accepted (e.g. the ACL denies the topic): keep it in the spool, reconnect
            # later, and say why; dropping it would lose data over a fixable setting.
            batch = pending.batch
            self._error = TransportError(
                f"broker refused seq {batch.first_seq}..{batch.last_seq}: {reason}"
            )
            return
        if pending.receipt:
            pending.deadline = time.monotonic() + self.config.receipt_timeout_s
        else:
            del self._pending[key]
            self._outcomes.append(Outcome(pending.batch))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == ANNOUNCE_TOPIC:
            announced = msg.payload == b"1"
            if announced and not self._use_receipts and self.config.receipts != "off":
                log.info("the platform announces commit receipts: waiting for them from now on")
                self._use_receipts = True
            self._announced = announced
            return
        key = getattr(msg.properties, "CorrelationData", None)
        pending = None if key is None else self._pending.pop(bytes(key), None)
        if pending is None:
            return  # a second receipt for a batch sent twice, or for an earlier connection
        self._by_mid.pop(pending.mid, None)
        try:
            rejected = json.loads(msg.payload)["rejected"]
        except (ValueError, KeyError, TypeError):
            self._error = TransportError(f"unreadable receipt on {msg.topic}: {msg.payload!r:.80}")
            return
        whole = next((r for r in rejected if r.get("index") == -1), None)
        if whole is not None and whole.get("reason") == "too_large":
            # Smaller batches will do: the forwarder halves them and sends again.
            self._error = BatchRejectedError(f"receipt: too_large {whole.get('detail')}", 413)
            return
        self._outcomes.append(_outcome(pending.batch, rejected))

    # -- Transport -----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a connection is up and has not failed."""
        return self._client is not None and self._error is None

    @property
    def in_flight(self) -> int:
        """Batches published and not yet answered (by PUBACK, or by receipt)."""
        return len(self._pending)

    def capacity(self) -> int:
        """Free slots in the window."""
        return max(0, self.config.window - len(self._pending)) if self.connected else 0

    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.config.client_id, protocol=self._protocol
        )
        client.username_pw_set(self.config.username, self.config.password)
        if self._ssl is not None:
            client.tls_set_context(self._ssl)
        if self.status is not None:
            client.will_set(self.status, OFFLINE, qos=1, retain=True)
        client.max_inflight_messages_set(self.config.window)
        client.connect_timeout = _CONNECT_TIMEOUT_S
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def connect(self) -> None:
        """Connect, learn whether receipts come, announce ``online``; TransportError if not."""
        if self._closed:
            raise ResourceStateError("the MQTT transport is closed")
        reason = self._open()
        mqtt5 = self._protocol == MQTTProtocolVersion.MQTTv5
        if mqtt5 and reason == "Unsupported protocol version" and self.config.receipts != "on":
            self._fall_back("the broker does not speak MQTT 5")
            self._protocol = MQTTProtocolVersion.MQTTv311
            reason = self._open()
        if reason is None or reason.is_failure:
            why = reason or self._error or "no CONNACK"
            self.drop()
            raise TransportError(f"broker {self.config.url} refused the connection: {why}")
        if self._protocol == MQTTProtocolVersion.MQTTv5 and self.config.receipts != "off":
            self._await_receipts_setup()
        if self._client is not None:
            if self.status is not None:
                self._client.publish(self.status, ONLINE, qos=1, retain=True)
            self._client.publish(
                attributes_topic(self.device_id), self.attributes, qos=1, retain=True
            )
        log.info(
            "connected to %s as %s (%s)",
            self.config.url,
            self.config.username,
            "batches count on their commit receipt"
            if self._use_receipts
            else "batches count on the broker's PUBACK",
        )

    def _open(self) -> ReasonCode | None:
        self.drop()
        self._error = None
        self._connack = _Answers()
        client = self._new_client()
        self._client = client
        try:
            if self._protocol == MQTTProtocolVersion.MQTTv5:
                client.connect(
                    self.config.host, self.config.port, self.config.keepalive_s, clean_start=True
                )
            else:
                client.connect(self.config.host, self.config.port, self.config.keepalive_s)
        except (OSError, ValueError) as exc:
            self.drop()
            raise TransportError(f"cannot connect to {self.config.url}: {exc}") from exc
        self._loop_until(lambda: self._connack.reason is not None, _CONNECT_TIMEOUT_S)
        return self._connack.reason

    def _await_receipts_setup(self) -> None:
        """Subscribe to our receipts and the announcement; decide whether to wait for them."""
        client = self._client
        assert client is not None
        self._announced = False
        client.subscribe([(self.receipts, 1), (ANNOUNCE_TOPIC, 1)])
        self._loop_until(lambda: self._connack.subscribed, _CONNECT_TIMEOUT_S)
        if self._error is not None:
            raise self._error
        refused = self._connack.refused
        if refused is not None:
            why = f"the broker refused the subscription to {self.receipts} ({refused})"
            if self.config.receipts == "on":
                raise TransportError(f"{why}: its ACL must let the device read its receipts")
            self._use_receipts = False
            self._fall_back(why)
            return
        if self.config.receipts == "auto":
            # A retained announcement comes right after the SUBACK.
            self._loop_until(lambda: self._announced, _ANNOUNCE_WAIT_S)
        self._use_receipts = self.config.receipts == "on" or self._announced
        if not self._use_receipts:
            self._fall_back("the platform does not announce commit receipts (platform/receipts)")

    def _fall_back(self, why: str) -> None:
        if not self._warned:
            log.warning(
                "%s: a batch counts as sent on the broker's PUBACK; a broker that restarts before"
                " the platform has read it can lose it",
                why,
            )
            self._warned = True

    def _loop_until(self, done: Callable[[], bool], timeout_s: float) -> None:
        client = self._client
        deadline = time.monotonic() + timeout_s
        while client is not None and not done() and time.monotonic() < deadline:
            if client.loop(0.1) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break

    def submit(self, batch: Batch) -> None:
        """Publish ``batch`` at QoS 1; its answer comes back through :meth:`poll`."""
        client = self._client
        if client is None or self._error is not None:
            raise TransportError("not connected")
        key = f"{batch.first_seq}-{batch.last_seq}".encode()
        self._publish(client, _Pending(batch, 0, self._use_receipts), key)

    def _publish(self, client: mqtt.Client, pending: _Pending, key: bytes) -> None:
        props = None
        if pending.receipt:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = self.receipts
            props.CorrelationData = key
        info = client.publish(self.topic, pending.batch.payload(), qos=1, properties=props)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise TransportError(f"publish failed: {mqtt.error_string(info.rc)}")
        pending.mid, pending.deadline = info.mid, None
        self._pending[key] = pending
        self._by_mid[info.mid] = key

    def poll(self, timeout_s: float) -> PollResult:
        """Run the network loop once; return the batches answered and any failure."""
        client = self._client
        if client is None:
            return PollResult(error=self._error or TransportError("not connected"))
        rc = client.loop(timeout_s)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and self._error is None:
            self._error = TransportError(
                f"connection to {self.config.url} lost: {mqtt.error_string(rc)}"
            )
        if self._error is None:
            self._resend_overdue(client)
        outcomes, self._outcomes = self._outcomes, []
        return PollResult(outcomes, self._error)

    def _resend_overdue(self, client: mqtt.Client) -> None:
        now = time.monotonic()
        overdue = [(key, p) for key, p in self._pending.items() if p.deadline and p.deadline <= now]
        for key, pending in overdue:
            log.warning(
                "no commit receipt for seq %d..%d within %g s: sending it again",
                pending.batch.first_seq,
                pending.batch.last_seq,
                self.config.receipt_timeout_s,
            )
            self._publish(client, pending, key)

    def drop(self) -> None:
        """Close the socket without goodbye; the broker publishes the Last Will."""
        client, self._client = self._client, None
        self._pending.clear()
        self._by_mid.clear()
        self._outcomes.clear()
        if client is None:
            return
        # Closes the connection and paho's wake-up socket pair: no public call does both.
        client._reset_sockets()  # noqa: SLF001

    def close(self) -> None:
        """Announce ``offline`` (retained), disconnect cleanly and refuse further use."""
        if self._closed:
            return
        self._closed = True
        client = self._client
        if client is None or self._error is not None:
            self.drop()
            return
        try:
            if self.status is not None:
                info = client.publish(self.status, OFFLINE, qos=1, retain=True)
                self._loop_until(info.is_published, _GOODBYE_TIMEOUT_S)
            client.disconnect()
            client.loop(0.1)
        finally:
            self.drop()
        log.info("disconnected from %s", self.config.url)


@dataclass
class _Answers:
    """What the broker answered on the current connection: CONNACK, then SUBACK."""

    reason: ReasonCode | None = None
    subscribed: bool = False
    refused: ReasonCode | None = None


def _outcome(batch: Batch, rejected: list[dict[str, Any]]) -> Outcome:
    """Turn a receipt's ``rejected`` list into the batch's outcome, rows named by seq.

    A message refused whole (index -1) refuses every row of the batch.
    """
    rows = batch.rows
    refusals = []
    for item in rejected:
        index, reason, detail = item.get("index"), str(item.get("reason")), str(item.get("detail"))
        if index == -1:
            return Outcome(batch, [Rejection(row.seq, reason, detail) for row in rows])
        if isinstance(index, int) and 0 <= index < len(rows):
            refusals.append(Rejection(rows[index].seq, reason, detail))
    return Outcome(batch, refusals)
