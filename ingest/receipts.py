"""Commit receipts over MQTT 5 request/response.

A device that sets the *Response Topic* property on its PUBLISH (and usually *Correlation
Data*) gets, once the batch holding that message has committed, a QoS 1 message on that
topic: the correlation data it sent and the body the HTTP path answers,
``{"accepted", "duplicates", "rejected": [{"index", "reason", "detail"}]}`` (a message
refused as a whole has one reject with index -1). Duplicates count as committed.

Receipts go only to ``receipts/{device_id}`` or below, for the device the message's topic
names: any other response topic is ignored and counted
(``ingest_receipts_refused_total``), so a device cannot make the ingest publish where it
could not itself. A device that asks for nothing gets nothing and pays nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec

from core import paho_speedups
from core.backoff import Backoff
from core.lifecycle import AsyncResource
from core.mqtt_link import LinkState, MqttLink, new_client
from core.mqtt_url import parse_mqtt_url
from ingest.intake import answer
from ingest.metrics import METRICS
from ingest.mqtt import RECEIPTS_IN_FLIGHT, ChunkReadBridge, OutgoingReceipt, publish_receipts
from ingest.settings import MqttSettings
from ingest.wire import Reject

__all__ = ["NoReceipts", "ReceiptPublisher", "ReceiptSender", "receipt_body", "receipt_topic"]

_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 5.0
_NOT_IN_A_TOPIC = frozenset("+#\0")  # wildcards, and the character MQTT forbids


class ReceiptSender(Protocol):
    """Publishes receipts at QoS 1 (the consumer's connection, or a helper's own)."""

    def send_receipts(self, receipts: Sequence[OutgoingReceipt]) -> None:
        """Queue the receipts of a commit; a lost one is recovered by the device's resend."""
        ...


def receipt_topic(device_id: str, response_topic: str) -> str | None:
    """Return ``response_topic`` when it lies under ``receipts/{device_id}``; else count it."""
    own = f"receipts/{device_id}"
    if (
        response_topic == own or response_topic.startswith(own + "/")
    ) and not _NOT_IN_A_TOPIC.intersection(response_topic):
        return response_topic
    METRICS.receipts_refused.inc()
    return None


def receipt_body(accepted: int, duplicates: int, rejects: Sequence[Reject]) -> bytes:
    """Encode a receipt: the same JSON as the HTTP answer (:func:`ingest.intake.answer`)."""
    return msgspec.json.encode(answer(accepted, duplicates, rejects))


class ReceiptPublisher(AsyncResource):
    """A connection that only publishes receipts: for workers handed messages by worker 0.

    Clean session: a receipt lost with the connection is recovered by the device's resend.
    """

    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        address = parse_mqtt_url(settings.mqtt_url)
        client = new_client(
            address, client_id, protocol="5", persistent=False, ca_file=settings.mqtt_ca_file
        )
        client.max_inflight_messages_set(RECEIPTS_IN_FLIGHT)
        paho_speedups.skip_untracked_pubacks(client)
        self._link = MqttLink(
            client,
            address,
            name=client_id,
            backoff=Backoff(_BACKOFF_FIRST_S, _BACKOFF_MAX_S),
            # The receipts of a commit leave in one write, their PUBACKs are read in chunks.
            bridge_factory=ChunkReadBridge,
        )

    @property
    def connected(self) -> bool:
        """Whether receipts can be published now."""
        return self._link.state is LinkState.CONNECTED

    async def _open(self) -> None:
        self._link.start()

    async def _close(self) -> None:
        await self._link.close()

    def send_receipts(self, receipts: Sequence[OutgoingReceipt]) -> None:
        """Publish commit receipts at QoS 1; skipped while disconnected (devices resend)."""
        if self.connected:
            publish_receipts(self._link.client, receipts)


class NoReceipts:
    """Stands in where receipts cannot be asked for (MQTT 3.1.1 has no response topic)."""

    def send_receipts(self, receipts: Sequence[OutgoingReceipt]) -> None:
        """Do nothing: no MQTT 3.1.1 message carries a response topic."""
