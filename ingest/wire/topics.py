"""MQTT topics of devices: telemetry, and the reports devices make about themselves.

``telemetry/{device_id}`` (wire format v1), ``telemetry/{device_id}/senml`` and
``attributes/{device_id}``.
"""

from __future__ import annotations

from typing import Final

from ingest.wire.base import DEVICE_ID_PATTERN, Format, is_device_id, quote
from ingest.wire.reasons import Reason, Reject

__all__ = ["ATTRIBUTES_PREFIX", "parse_attributes_topic", "parse_topic"]

ATTRIBUTES_PREFIX: Final = "attributes/"


def parse_attributes_topic(topic: str) -> str | Reject:
    """Return the device id of ``attributes/{device_id}``."""
    device_id = topic.removeprefix(ATTRIBUTES_PREFIX)
    if device_id == topic or not is_device_id(device_id):
        return Reject(
            -1,
            Reason.INVALID_TOPIC if device_id == topic else Reason.INVALID_NAME,
            f"topic {quote(topic)} is not attributes/{{device id}}",
        )
    return device_id


def parse_topic(topic: str) -> tuple[str, Format] | Reject:
    """Split ``telemetry/{device_id}[/senml]`` into the device id and the payload format."""
    parts = topic.split("/", 3)
    if parts[0] != "telemetry" or parts[2:] not in ([], ["senml"]) or len(parts) < 2:
        return Reject(
            -1,
            Reason.INVALID_TOPIC,
            f"topic {quote(topic)} is not telemetry/{{device id}}[/senml]",
        )
    device_id = parts[1]
    if not is_device_id(device_id):
        return Reject(
            -1,
            Reason.INVALID_NAME,
            f"device id {quote(device_id)} in the topic does not match {DEVICE_ID_PATTERN}",
        )
    return device_id, Format.SENML if len(parts) == 3 else Format.JSON
