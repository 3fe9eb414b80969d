"""MQTT topics of telemetry: ``telemetry/{device_id}`` and ``telemetry/{device_id}/senml``."""

from __future__ import annotations

from ingest.wire.base import DEVICE_ID_PATTERN, Format, is_device_id, quote
from ingest.wire.reasons import Reason, Reject

__all__ = ["parse_topic"]


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
