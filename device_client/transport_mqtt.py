"""MQTT transport: QoS 1 batches to ``telemetry/{device_id}``, a window of them in flight.

A fresh paho client is made for every connection and driven from the forwarder's thread
(``loop()``, no paho thread, no paho auto-reconnect). paho would otherwise re-send its own
copy of unacknowledged messages after a reconnect while we re-send them from the spool, and
the broker would see each twice. The spool is the only queue; ``clean_start`` is set and the
broker keeps no session for us.

The retained ``status/{device_id}`` topic says ``online`` after each connection and
``offline`` on a clean stop, and the broker publishes ``offline`` (the Last Will) when the
device vanishes without saying goodbye.
"""

from __future__ import annotations

import logging
import ssl
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from device_client.config import MqttConfig, TlsConfig
from device_client.errors import ResourceStateError, TransportError
from device_client.tls import build_ssl_context
from device_client.transport import Batch, Outcome, PollResult

__all__ = ["MqttTransport", "status_topic", "telemetry_topic"]

log = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"
_CONNECT_TIMEOUT_S = 10.0
_GOODBYE_TIMEOUT_S = 2.0


def telemetry_topic(device_id: str) -> str:
    """Topic the device publishes readings to."""
    return f"telemetry/{device_id}"


def status_topic(device_id: str) -> str:
    """Retained topic holding ``online`` or ``offline``."""
    return f"status/{device_id}"


class MqttTransport:
    """Publishes batches at QoS 1; a batch counts as sent when its PUBACK arrives."""

    name = "mqtt"
    connect_reaches_server = True

    def __init__(self, config: MqttConfig, tls: TlsConfig, device_id: str) -> None:
        self.config = config
        self.device_id = device_id
        self.topic = telemetry_topic(device_id)
        self.status = status_topic(device_id) if config.status_topic else None
        self._ssl: ssl.SSLContext | None = build_ssl_context(tls) if config.use_tls else None
        self._client: mqtt.Client | None = None
        self._in_flight: dict[int, Batch] = {}
        self._outcomes: list[Outcome] = []
        self._error: TransportError | None = None
        self._connack: ReasonCode | None = None
        self._closed = False

    # -- paho callbacks (run inside loop(), on the forwarder's thread) --------------

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self._connack = reason

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if self._error is None:
            self._error = TransportError(f"connection to {self.config.url} lost: {reason}")

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        batch = self._in_flight.pop(mid, None)
        if batch is None:
            return  # the status message
        if reason.is_failure:
            # Not accepted (e.g. the ACL denies the topic): keep it in the spool, reconnect
            # later, and say why; dropping it would lose data over a fixable setting.
            self._error = TransportError(
                f"broker refused seq {batch.first_seq}..{batch.last_seq}: {reason}"
            )
            return
        self._outcomes.append(Outcome(batch))

    # -- Transport -----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a connection is up and has not failed."""
        return self._client is not None and self._error is None

    @property
    def in_flight(self) -> int:
        """Messages published and not yet acknowledged."""
        return len(self._in_flight)

    def capacity(self) -> int:
        """Free slots in the window."""
        return max(0, self.config.window - len(self._in_flight)) if self.connected else 0

    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
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
        return client

    def connect(self) -> None:
        """Connect, wait for CONNACK and announce ``online``; raise TransportError on failure."""
        if self._closed:
            raise ResourceStateError("the MQTT transport is closed")
        self.drop()
        self._error = None
        self._connack = None
        client = self._new_client()
        self._client = client
        try:
            client.connect(
                self.config.host, self.config.port, self.config.keepalive_s, clean_start=True
            )
        except (OSError, ValueError) as exc:
            self.drop()
            raise TransportError(f"cannot connect to {self.config.url}: {exc}") from exc
        reason = self._await_connack(client)
        if reason is None or reason.is_failure:
            why = reason or self._error or "no CONNACK"
            self.drop()
            raise TransportError(f"broker {self.config.url} refused the connection: {why}")
        if self.status is not None:
            client.publish(self.status, ONLINE, qos=1, retain=True)
        log.info("connected to %s as %s", self.config.url, self.config.username)

    def _await_connack(self, client: mqtt.Client) -> ReasonCode | None:
        deadline = time.monotonic() + _CONNECT_TIMEOUT_S
        while time.monotonic() < deadline:
            if client.loop(0.1) != MQTTErrorCode.MQTT_ERR_SUCCESS or self._connack is not None:
                break
        return self._connack

    def submit(self, batch: Batch) -> None:
        """Publish ``batch`` at QoS 1; its acknowledgement comes back through :meth:`poll`."""
        client = self._client
        if client is None or self._error is not None:
            raise TransportError("not connected")
        info = client.publish(self.topic, batch.payload(), qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise TransportError(f"publish failed: {mqtt.error_string(info.rc)}")
        self._in_flight[info.mid] = batch

    def poll(self, timeout_s: float) -> PollResult:
        """Run the network loop once; return the PUBACKs that came and any failure."""
        client = self._client
        if client is None:
            return PollResult(error=self._error or TransportError("not connected"))
        rc = client.loop(timeout_s)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and self._error is None:
            self._error = TransportError(
                f"connection to {self.config.url} lost: {mqtt.error_string(rc)}"
            )
        outcomes, self._outcomes = self._outcomes, []
        return PollResult(outcomes, self._error)

    def drop(self) -> None:
        """Close the socket without goodbye; the broker publishes the Last Will."""
        client, self._client = self._client, None
        self._in_flight.clear()
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
                deadline = time.monotonic() + _GOODBYE_TIMEOUT_S
                while not info.is_published() and time.monotonic() < deadline:
                    if client.loop(0.1) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        break
            client.disconnect()
            client.loop(0.1)
        finally:
            self.drop()
        log.info("disconnected from %s", self.config.url)
