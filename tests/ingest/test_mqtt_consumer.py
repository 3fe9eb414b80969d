"""The consumer against a real Mosquitto: readiness, a bounded inbox, whole messages, acks."""

from __future__ import annotations

import uuid

import pytest

from core.errors import StateError
from core.paho_speedups import READ_CHUNK
from core.settings import MqttProtocol
from ingest.mqtt import MqttConsumer
from ingest.settings import MqttSettings
from tests.e2e.helpers import wait_for
from tests.support.mqtt import TestClient

WINDOW = 10
MESSAGES = 100


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_a_slow_handler_holds_at_most_a_window_in_memory(
    mqtt_url: str, protocol: MqttProtocol
) -> None:
    """The socket is left unread while the inbox holds ``MQTT_RECEIVE_WINDOW`` messages.

    MQTT 3.1.1 has no Receive Maximum to announce, and the test broker has no in-flight
    limit (``max_inflight_messages 0``); with MQTT 5, Mosquitto 2.0 honours the Receive
    Maximum only until the first window is acknowledged. Without the bound, the rest of the
    messages would be read into memory at once, on either protocol.
    """
    tag = uuid.uuid4().hex[:8]
    settings = MqttSettings(
        mqtt_url=mqtt_url,
        mqtt_protocol=protocol,
        mqtt_share_group="",
        mqtt_receive_window=WINDOW,
    )
    consumer = MqttConsumer(settings, f"consumer-{tag}")
    async with consumer:
        await wait_for(lambda: consumer.subscribed, what="the SUBACK")
        assert consumer.readiness() == "ok"
        with TestClient(mqtt_url) as publisher:
            infos = [
                publisher.publish(f"telemetry/dev-{tag}", str(i).encode()) for i in range(MESSAGES)
            ]
            for info in infos:
                info.wait_for_publish(10)
        received: list[bytes] = []
        most = 0
        while len(received) < MESSAGES:
            # A slow handler: the next group is taken only once the inbox is full.
            wanted = min(WINDOW, MESSAGES - len(received))

            def full(wanted: int = wanted) -> bool:
                return len(consumer._inbox) >= wanted

            await wait_for(full, what="a full inbox")
            most = max(most, len(consumer._inbox))
            group = await consumer.receive()
            consumer.ack(group)
            received += [delivery.payload for delivery in group]
    assert received == [str(i).encode() for i in range(MESSAGES)]
    assert most <= WINDOW
    with pytest.raises(StateError, match="MqttConsumer is closed"):
        await consumer.receive()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_messages_of_any_size_arrive_whole_in_order_and_acknowledged(
    mqtt_url: str, protocol: MqttProtocol
) -> None:
    """The socket is read in chunks (paho_speedups.ReadBuffer) that cut packets anywhere.

    Messages of a few bytes to several chunks each arrive whole and in order, and the
    acknowledgements sent together (paho_speedups.join_writes) all reach the broker: after
    a reconnect to the same session, the first message is a new one, not a redelivery.
    """
    tag = uuid.uuid4().hex[:8]
    settings = MqttSettings(
        mqtt_url=mqtt_url, mqtt_protocol=protocol, mqtt_share_group="", mqtt_receive_window=500
    )
    sizes = [1, 700, 3 * READ_CHUNK + 17, 5, READ_CHUNK, READ_CHUNK - 1, 2] * 15
    payloads = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    consumer = MqttConsumer(settings, f"consumer-{tag}")
    async with consumer:
        await wait_for(lambda: consumer.subscribed, what="the SUBACK")
        with TestClient(mqtt_url) as publisher:
            for info in [publisher.publish(f"telemetry/dev-{tag}", p) for p in payloads]:
                info.wait_for_publish(10)
        received: list[bytes] = []
        while len(received) < len(payloads):
            group = await consumer.receive()
            consumer.ack(group)
            received += [delivery.payload for delivery in group]
    assert [len(p) for p in received] == sizes
    assert received == payloads
    consumer = MqttConsumer(settings, f"consumer-{tag}")
    async with consumer:
        await wait_for(lambda: consumer.subscribed, what="the SUBACK again")
        with TestClient(mqtt_url) as publisher:
            publisher.publish(f"telemetry/dev-{tag}", b"new").wait_for_publish(10)
        group = await consumer.receive()
        assert [delivery.payload for delivery in group] == [b"new"]
        consumer.ack(group)
