"""MQTT driver: a small pool of paho clients, driven by the asyncio loop, for the fleet.

Thousands of devices share a few connections (one per ``devices_per_connection``), so no
paho network thread runs per device: like the ingest's consumer, each client is kept
connected by :class:`core.mqtt_link.MqttLink`, its socket read and written by the event
loop. A device's message goes to ``telemetry/{device_id}`` (``/senml`` for SenML) at QoS 1
and counts as acknowledged when its commit receipt arrives on
``receipts/{device_id}/{connection}`` (or its PUBACK, where the platform sends no
receipts). Each connection has a window of messages in flight; a lost connection fails its
in-flight messages (the devices send them again) and reconnects after a capped, jittered,
doubling delay. MQTT 5 by default;
``protocol="3.1.1"`` for brokers without MQTT 5 (amqtt), with a clean session either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from types import TracebackType
from typing import Any, Literal, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.backoff import Backoff
from core.errors import ConfigError as CoreConfigError
from core.mqtt_link import MqttLink, new_client
from core.mqtt_url import BrokerAddress
from core.mqtt_url import parse_mqtt_url as parse_broker_url
from core.settings import MqttProtocol
from simulator.errors import ConfigError, DriverError
from simulator.messages import Message

__all__ = ["BrokerAddress", "MqttDriver", "ReceiptMode", "parse_mqtt_url"]

log = logging.getLogger(__name__)

ReceiptMode = Literal["auto", "on", "off"]
#: Retained by the platform: b"1" when it sends commit receipts.
ANNOUNCE_TOPIC = "platform/receipts"
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 5.0
_ANNOUNCE_WAIT_S = 1.0


def parse_mqtt_url(url: str) -> BrokerAddress:
    """Parse ``mqtt://[user[:pass]@]host[:port]`` or ``mqtts://...``; ConfigError if not."""
    try:
        return parse_broker_url(url)
    except CoreConfigError as exc:
        raise ConfigError(str(exc)) from exc


class _Link:
    """One broker connection with its window of messages awaiting PUBACK (and receipt)."""

    def __init__(
        self, address: BrokerAddress, client_id: str, window: int, protocol: MqttProtocol
    ) -> None:
        self.address = address
        self.client_id = client_id
        self.window = asyncio.Semaphore(window)
        self.subscribed = asyncio.Event()
        self.announced = asyncio.Event()
        self._mqtt5 = protocol == "5"
        self._loop = asyncio.get_running_loop()
        self._in_flight: dict[int, asyncio.Future[None]] = {}
        self._receipts: dict[bytes, asyncio.Future[int]] = {}
        self._correlations = itertools.count(1)
        client = new_client(address, client_id, protocol=protocol, persistent=False)
        client.max_inflight_messages_set(window)
        client.max_queued_messages_set(window)
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.client = client
        self._link = MqttLink(
            client,
            address,
            name=client_id,
            backoff=Backoff(_BACKOFF_FIRST_S, _BACKOFF_MAX_S),
            on_connected=self._listen,
            on_lost=self._fail_in_flight,
        )
        self.connected = self._link.connected
        self._link.start()

    async def publish(
        self, device_id: str, topic: str, payload: bytes, wait_s: float, *, receipt: bool
    ) -> int | None:
        """Publish at QoS 1 and wait for the PUBACK, then (``receipt``) for the receipt.

        Return the items the receipt says were refused (None without a receipt);
        DriverError when an answer does not come in ``wait_s``.
        """
        async with self.window:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation
            # that arrives as the awaited event does, and a stopped fleet would go on.
            try:
                async with asyncio.timeout(wait_s):
                    await self.connected.wait()
            except TimeoutError as exc:
                raise DriverError(f"not connected to {self.address!r}") from exc
            props = None
            answer: asyncio.Future[int] | None = None
            if receipt:
                key = next(self._correlations).to_bytes(8, "big")
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.ResponseTopic = f"receipts/{device_id}/{self.client_id}"
                props.CorrelationData = key
                answer = self._loop.create_future()
                self._receipts[key] = answer
            try:
                info = self.client.publish(topic, payload, qos=1, properties=props)
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    raise DriverError(f"publish failed: {mqtt.error_string(info.rc)}")
                await self._wait(self._in_flight, info.mid, wait_s, "PUBACK")
                if answer is None:
                    return None
                async with asyncio.timeout(wait_s):
                    return await answer
            except TimeoutError as exc:
                raise DriverError(f"no commit receipt within {wait_s:g} s") from exc
            finally:
                if receipt:
                    self._receipts.pop(key, None)

    async def _wait(
        self, pending: dict[int, asyncio.Future[None]], mid: int, wait_s: float, what: str
    ) -> None:
        done = self._loop.create_future()
        pending[mid] = done
        try:
            async with asyncio.timeout(wait_s):
                await done
        except TimeoutError as exc:
            raise DriverError(f"no {what} within {wait_s:g} s") from exc
        finally:
            pending.pop(mid, None)

    async def close(self) -> None:
        """Disconnect and stop reconnecting."""
        await self._link.close()

    def _listen(self, client: mqtt.Client, _session_present: bool) -> None:
        if self._mqtt5:
            self.subscribed.clear()
            client.subscribe([(f"receipts/+/{self.client_id}", 1), (ANNOUNCE_TOPIC, 1)])
        else:
            self.subscribed.set()

    def _fail_in_flight(self) -> None:
        lost, self._in_flight = self._in_flight, {}
        waiting, self._receipts = self._receipts, {}
        error = DriverError(f"connection to {self.address!r} lost")
        futures: list[asyncio.Future[Any]] = [*lost.values(), *waiting.values()]
        for done in futures:
            if not done.done():
                done.set_exception(error)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _m: int, reasons: Any, _p: Any) -> None:
        refused = [r for r in reasons if r.is_failure]
        if refused:
            log.warning(
                "the broker refused %s the receipts subscription (%s): check its ACL",
                self.client_id,
                refused[0],
            )
        self.subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == ANNOUNCE_TOPIC:
            if msg.payload == b"1":
                self.announced.set()
            return
        key = getattr(msg.properties, "CorrelationData", None)
        answer = None if key is None else self._receipts.get(bytes(key))
        if answer is None or answer.done():
            return
        try:
            answer.set_result(len(json.loads(msg.payload)["rejected"]))
        except (ValueError, KeyError, TypeError):
            answer.set_exception(DriverError(f"unreadable receipt: {msg.payload!r:.80}"))

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        done = self._in_flight.pop(mid, None)
        if done is None or done.done():
            return
        if reason.is_failure:
            done.set_exception(DriverError(f"broker refused the message: {reason}"))
        else:
            done.set_result(None)


class MqttDriver:
    """Publishes the fleet's messages over ``connections`` broker connections.

    ``receipts``: ``auto`` counts a message as acknowledged on its commit receipt where the
    platform announces receipts (``platform/receipts``) and the broker speaks MQTT 5, else
    on its PUBACK (with one warning line); ``on`` always waits for receipts, ``off`` never.
    """

    def __init__(
        self,
        mqtt_url: str,
        *,
        connections: int = 1,
        window: int = 500,
        ack_timeout_s: float = 30.0,
        protocol: MqttProtocol = "5",
        receipts: ReceiptMode = "auto",
    ) -> None:
        self.address = parse_mqtt_url(mqtt_url)
        self.protocol: MqttProtocol = protocol
        self.connections = max(1, connections)
        self.window = window
        self.ack_timeout_s = ack_timeout_s
        self.receipts: ReceiptMode = receipts
        self.use_receipts = False
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
        """Wait until every connection is up; learn whether receipts come (see the class)."""
        try:
            async with asyncio.timeout(timeout_s):
                for link in self._links:
                    await link.connected.wait()
                    await link.subscribed.wait()
        except TimeoutError as exc:
            raise DriverError(f"cannot connect to the MQTT broker {self.address!r}") from exc
        announced = False
        if self.protocol == "5" and self.receipts == "auto":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_ANNOUNCE_WAIT_S):  # retained: right after SUBACK
                    await self._links[0].announced.wait()
            announced = self._links[0].announced.is_set()
        self.use_receipts = self.protocol == "5" and (self.receipts == "on" or announced)
        if self.receipts != "off" and not self.use_receipts:
            why = (
                "the broker is spoken to over MQTT 3.1.1"
                if self.protocol != "5"
                else "the platform does not announce commit receipts"
            )
            log.warning(
                "%s: a message counts as acknowledged on the broker's PUBACK, not on its commit",
                why,
            )

    async def send(self, device_index: int, device_id: str, message: Message) -> int | None:
        """Publish ``message`` for the device; wait for its receipt (or PUBACK).

        Return the items the receipt says were refused, or None without receipts.
        """
        if not self._links:
            raise DriverError("the MQTT driver is not open")
        topic = f"telemetry/{device_id}" + ("/senml" if message.encoding == "senml" else "")
        link = self._links[device_index % len(self._links)]
        return await link.publish(
            device_id, topic, message.payload, self.ack_timeout_s, receipt=self.use_receipts
        )
