"""A small synchronous paho client for tests that talk to the broker directly."""

from __future__ import annotations

import queue
import threading
import uuid
from typing import Self
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode


class TestClient:
    """Connects to ``url`` (``mqtt://[user:pass@]host:port``), collects received messages."""

    __test__ = False  # not a test class, despite the name

    def __init__(
        self,
        url: str,
        client_id: str | None = None,
        *,
        clean_start: bool = True,
        session_expiry_s: int = 0,
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 1883
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{uuid.uuid4().hex[:12]}",
            protocol=protocol,
        )
        self.mqtt5 = protocol == MQTTProtocolVersion.MQTTv5
        if parts.username:
            self.client.username_pw_set(parts.username, parts.password)
        self.clean_start = clean_start
        self.session_expiry_s = session_expiry_s
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connect_reason: ReasonCode | None = None
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_a: self.disconnected.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(msg)

    def _on_connect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        self.connect_reason = reason
        self.connected.set()

    def connect(self, timeout_s: float = 10) -> Self:
        """Connect and start the network thread; raise if the broker refuses."""
        if self.mqtt5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.session_expiry_s
            self.client.connect(
                self.host, self.port, clean_start=self.clean_start, properties=props
            )
        else:
            self.client.connect(self.host, self.port)
        self.client.loop_start()
        if not self.connected.wait(timeout_s):
            raise TimeoutError("no CONNACK")
        if self.connect_reason is not None and self.connect_reason.is_failure:
            raise ConnectionRefusedError(str(self.connect_reason))
        return self

    def subscribe(self, topic: str, qos: int = 1) -> int:
        """Subscribe, wait for the SUBACK and return its reason code (from 0x80: refused)."""
        done = threading.Event()
        granted: list[ReasonCode] = []

        def on_subscribe(
            _c: object, _u: object, _m: int, reasons: list[ReasonCode], _p: object
        ) -> None:
            granted.extend(reasons)
            done.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe(topic, qos)
        if not done.wait(10):
            raise TimeoutError("no SUBACK")
        return granted[0].value

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        *,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        retain: bool = False,
    ) -> mqtt.MQTTMessageInfo:
        """Publish one message (asking for a receipt on ``response_topic``); wait on the info."""
        props = None
        if response_topic is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        return self.client.publish(topic, payload, qos, retain, properties=props)

    def receive(self, count: int, timeout_s: float = 10) -> list[mqtt.MQTTMessage]:
        """Wait for ``count`` messages, raising TimeoutError with how many came."""
        got: list[mqtt.MQTTMessage] = []
        try:
            while len(got) < count:
                got.append(self.messages.get(timeout=timeout_s))
        except queue.Empty:
            raise TimeoutError(f"received {len(got)} of {count} messages") from None
        return got

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def clear_retained(url: str, topics: str = "attributes/#") -> int:
    """Delete the retained messages under ``topics``; return how many there were.

    Devices' attribute reports are retained, and the session's broker outlives each test:
    without this, every later subscription to ``attributes/+`` would get them first. The
    broker sends a subscription's retained messages before anything published after it, so
    a sentinel published after the SUBACK marks the end of them.
    """
    sentinel = f"{topics.rstrip('#')}clear-{uuid.uuid4().hex[:12]}"
    with TestClient(url) as client:
        client.subscribe(topics)
        client.publish(sentinel, b"").wait_for_publish(10)
        retained = set()
        while True:
            message = client.messages.get(timeout=10)
            if message.topic == sentinel:
                break
            if message.retain and message.payload:
                retained.add(message.topic)
        for topic in sorted(retained):
            client.publish(topic, b"", retain=True).wait_for_publish(10)
    return len(retained)
