"""MQTT intake: deliveries from the consumer, through the accept step, acknowledged after commit.

Telemetry and devices' reports about themselves (``attributes/{device_id}``) take the same
way. One message goes :meth:`MqttConsumer.receive <ingest.mqtt.MqttConsumer.receive>` →
:meth:`MqttIntake.handle` (topic, size, device) → :func:`ingest.intake.accept` →
:meth:`Pipeline.submit <ingest.pipeline.Pipeline.submit>`
→ commit → the ``ack`` callable given at construction, then the receipts that were asked
for (:mod:`ingest.receipts`). The messages that arrived together
become one submission, which spares a future, a queue entry and a callback per message.
A group that could not be stored stays unacknowledged and is tried again here a second
later (the broker would only redeliver it after a reconnect).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from core.errors import one_line
from core.lifecycle import AsyncResource, ResourceState
from core.registry import DeviceRef
from ingest.devices import Miss
from ingest.errors import IngestError
from ingest.intake import Intake, accept, refuse
from ingest.metrics import METRICS
from ingest.mqtt import Delivery
from ingest.pipeline import Outcome, Span, Submission
from ingest.receipts import ReceiptSender, receipt_body, receipt_topic
from ingest.records import AttributeReport
from ingest.wire import Reason, Reject, parse_topic
from ingest.wire.attributes import parse_attributes
from ingest.wire.topics import ATTRIBUTES_PREFIX, parse_attributes_topic

__all__ = ["Ack", "MqttIntake", "Receive"]

log = logging.getLogger(__name__)

#: Waits for the next group of deliveries (``MqttConsumer.receive``).
Receive = Callable[[], Awaitable[list[Delivery]]]
#: Acknowledges committed deliveries (``MqttConsumer.ack``).
Ack = Callable[[Sequence[Delivery]], None]

_RECEIVED = METRICS.received.labels("mqtt")
_RETRY_S = 1.0


@dataclass(frozen=True, slots=True)
class _Receipt:
    """Where one message's receipt goes, and which of the submission's sets are its own."""

    topic: str
    correlation: bytes | None
    span: Span
    rejects: list[Reject]


class MqttIntake(AsyncResource):
    """Takes groups of deliveries from ``receive`` and passes committed ones to ``ack``.

    Messages that asked for a commit receipt get it through ``receipts`` after the ack.
    """

    def __init__(
        self,
        intake: Intake,
        *,
        receive: Receive,
        ack: Ack,
        receipts: ReceiptSender,
        max_payload_bytes: int,
    ) -> None:
        self._intake = intake
        self._receive = receive
        self._ack = ack
        self._receipts = receipts
        self._max_payload_bytes = max_payload_bytes
        self._loop_task: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()

    async def _open(self) -> None:
        self._loop_task = asyncio.create_task(self._take_forever(), name="mqtt-intake")

    async def _close(self) -> None:
        """Stop taking messages and cancel pending retries; theirs stay unacknowledged."""
        tasks = [t for t in (self._loop_task, *self._retries) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _take_forever(self) -> None:
        while True:
            deliveries = await self._receive()
            _RECEIVED.inc(len(deliveries))
            try:
                await self.handle(deliveries)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Failed messages stay unacknowledged and come back after a reconnect.
                log.exception("handling %d MQTT messages failed", len(deliveries))

    async def handle(self, deliveries: list[Delivery]) -> None:
        """Queue the messages as one submission; acknowledge them, or retry, once it commits."""
        sub = Submission(datetime.now(UTC))
        receipts: list[_Receipt] = []
        try:
            if len(deliveries) > 1:
                # Devices new to this worker's cache are looked up in one query, not one each.
                await self._intake.devices.prefetch({_topic_device(d.topic) for d in deliveries})
            for delivery in deliveries:
                receipt = await self._add(sub, delivery)
                if receipt is not None:
                    receipts.append(receipt)
            await self._intake.pipeline.submit(sub)
        except IngestError as exc:
            self._retry_later(deliveries, exc)
            return
        sub.future.add_done_callback(lambda fut: self._committed(fut, sub, deliveries, receipts))

    async def _add(self, sub: Submission, delivery: Delivery) -> _Receipt | None:
        """Add one message to ``sub``; return what its receipt needs, if it asked for one."""
        body = delivery.payload
        if delivery.topic.startswith(ATTRIBUTES_PREFIX):
            await self._add_attributes(sub, delivery)
            return None
        topic = parse_topic(delivery.topic)
        if isinstance(topic, Reject):
            refuse(sub, topic.reason, topic.detail, body, source="mqtt", device_id=None)
            return None  # no device, so no receipts topic it may read
        device_id, fmt = topic
        start, typed_start = len(sub.sets), len(sub.typed)
        device = await self._device(sub, delivery, device_id)
        if isinstance(device, Reject):
            rejects = [device]
        else:
            verdict = await accept(sub, body, fmt, device, source="mqtt", intake=self._intake)
            rejects = verdict.rejects if verdict.whole is None else [verdict.whole]
        if delivery.response_topic is None:
            return None
        receipt_to = receipt_topic(device_id, delivery.response_topic)
        if receipt_to is None:
            return None
        return _Receipt(receipt_to, delivery.correlation, sub.span(start, typed_start), rejects)

    async def _device(
        self, sub: Submission, delivery: Delivery, device_id: str
    ) -> DeviceRef | Reject:
        """Find the registered device of a message; refuse one too large or of a stranger."""
        body, devices = delivery.payload, self._intake.devices
        if len(body) > self._max_payload_bytes:
            reject = Reject(
                -1, Reason.TOO_LARGE, f"payload of {len(body)} bytes over {self._max_payload_bytes}"
            )
        else:
            device = devices.cached_id(device_id)
            if isinstance(device, Miss):
                device = await devices.by_id(device_id)
            if device is not None:
                return device
            detail = f"device {device_id} is not registered (register it through the API)"
            reject = Reject(-1, Reason.UNKNOWN_DEVICE, detail)
        refuse(sub, reject.reason, reject.detail, body, source="mqtt", device_id=device_id)
        return reject

    async def _add_attributes(self, sub: Submission, delivery: Delivery) -> None:
        """Add a device's report about itself to ``sub``, or its dead letter.

        Reports are retained, so the broker hands every new subscription the last report of
        every device that ever sent one, deleted devices included: a report of a device
        that is not registered is counted and logged, not dead-lettered at every start. An
        empty payload clears a retained message (MQTT's way to delete one): nothing to
        store.
        """
        body = delivery.payload
        device_id = parse_attributes_topic(delivery.topic)
        if isinstance(device_id, Reject):
            refuse(sub, device_id.reason, device_id.detail, body, source="mqtt", device_id=None)
            METRICS.attribute_reports.labels("rejected").inc()
            return
        if not body:
            METRICS.attribute_reports.labels("cleared").inc()
            return
        devices = self._intake.devices
        device = devices.cached_id(device_id)
        if isinstance(device, Miss):
            device = await devices.by_id(device_id, register=False)
        if device is None:
            log.info("attributes of %s ignored: the device is not registered", device_id)
            METRICS.attribute_reports.labels("unknown_device").inc()
            return
        report = parse_attributes(body)
        if isinstance(report, Reject):
            refuse(sub, report.reason, report.detail, body, source="mqtt", device_id=device_id)
            METRICS.attribute_reports.labels("rejected").inc()
            return
        sub.attributes.append(AttributeReport(device.device_key, report, sub.received_at))
        METRICS.attribute_reports.labels("stored").inc()

    def _committed(
        self,
        fut: asyncio.Future[Outcome],
        sub: Submission,
        deliveries: list[Delivery],
        receipts: list[_Receipt],
    ) -> None:
        exc = fut.exception()
        if exc is not None:
            self._retry_later(deliveries, exc)
            return
        self._ack(deliveries)
        if receipts:
            outcome = fut.result()
            outgoing = []
            for receipt in receipts:
                new, duplicates = outcome.counts(sub, receipt.span)
                body = receipt_body(new, duplicates, receipt.rejects)
                outgoing.append((receipt.topic, receipt.correlation, body))
            self._receipts.send_receipts(outgoing)

    def _retry_later(self, deliveries: list[Delivery], exc: BaseException) -> None:
        if self.state is not ResourceState.OPEN:
            return  # closing: the broker redelivers them to whoever connects next
        log.warning("%d messages not stored (%s); retrying", len(deliveries), one_line(exc))
        task = asyncio.create_task(self._retry(deliveries), name="mqtt-intake-retry")
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _retry(self, deliveries: list[Delivery]) -> None:
        await asyncio.sleep(_RETRY_S)
        try:
            await self.handle(deliveries)
        except Exception:
            log.exception("handling %d MQTT messages failed", len(deliveries))


def _topic_device(topic: str) -> str:
    """Return the device id part of a telemetry topic, unchecked (``parse_topic`` checks it)."""
    parts = topic.split("/", 2)
    return parts[1] if len(parts) > 1 else ""
