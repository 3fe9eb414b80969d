"""Delivery: hand a device's message to its driver, retry until acknowledged, account for it.

A message that is not acknowledged (connection lost, timeout, 5xx) is sent again after a
capped, jittered, doubling delay (:class:`core.backoff.Backoff`); 429 and 503 are waited
out for as long as Retry-After says. The ledger sees the first copy as sent and every
acknowledged copy as acknowledged.
"""

from __future__ import annotations

import asyncio
import logging

from core.backoff import Backoff
from simulator.accounting import Ledger
from simulator.driver_http import HttpDriver
from simulator.driver_mqtt import MqttDriver
from simulator.errors import DriverError, RefusedError, RetryLaterError
from simulator.fleet import DeviceRecord
from simulator.messages import Message

__all__ = ["Courier"]

log = logging.getLogger(__name__)

_RETRY_FIRST_S = 0.2
_RETRY_MAX_S = 5.0


class Courier:
    """Delivers messages through the MQTT or HTTP driver, as each device's protocol says."""

    def __init__(self, ledger: Ledger, mqtt: MqttDriver | None, http: HttpDriver | None) -> None:
        self.ledger = ledger
        self.mqtt = mqtt
        self.http = http
        self.last_error: str | None = None

    async def _send_once(self, index: int, device: DeviceRecord, message: Message) -> int | None:
        if device.transport == "mqtt":
            if self.mqtt is None:
                raise RefusedError("no MQTT driver: give --mqtt-url")
            return await self.mqtt.send(index, device.device_id, message)
        if self.http is None or device.token is None:
            raise RefusedError("no HTTP driver or no token")
        return await self.http.send(device.token, message)

    async def deliver(
        self, index: int, device: DeviceRecord, message: Message, *, duplicate: bool = False
    ) -> bool:
        """Send until acknowledged; return False if the server refused it for good."""
        self.ledger.sent(device.device_id, message, duplicate=duplicate)
        backoff = Backoff(_RETRY_FIRST_S, _RETRY_MAX_S)
        while True:
            try:
                rejects = await self._send_once(index, device, message)
            except RefusedError as exc:
                self.ledger.messages_failed += 1
                self.last_error = str(exc)
                log.warning("device %s: message refused: %s", device.device_id, exc)
                return False
            except RetryLaterError as exc:
                wait_s = exc.retry_after_s
            except DriverError as exc:
                self.last_error = str(exc)
                wait_s = backoff.next_delay()
            else:
                self.ledger.acked(device.device_id, message, rejects)
                return True
            self.ledger.retries += 1
            await asyncio.sleep(wait_s)
