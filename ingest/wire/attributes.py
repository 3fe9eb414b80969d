"""What a device reports about itself: a JSON object of attributes (agent version, model).

Sent retained on ``attributes/{device_id}`` (MQTT) or with ``PUT /v1/attributes`` (HTTP),
and kept apart from the operator's metadata; each report replaces the one before. A report
is a JSON object of at most ``MAX_ATTRIBUTES`` members and ``MAX_ATTRIBUTES_BYTES`` bytes,
without NUL characters (jsonb cannot hold them); anything else is refused whole with a
reason code, like a telemetry message.
"""

from __future__ import annotations

import json
from typing import Final

from pydantic import ValidationError

from ingest.wire.base import JSON_VALUE, malformed
from ingest.wire.reasons import Reason, Reject

__all__ = ["MAX_ATTRIBUTES", "MAX_ATTRIBUTES_BYTES", "parse_attributes"]

MAX_ATTRIBUTES: Final = 64
MAX_ATTRIBUTES_BYTES: Final = 8192


def parse_attributes(body: bytes) -> str | Reject:
    """Return the report as compact JSON, or why it is refused (a reject of index -1)."""
    if len(body) > MAX_ATTRIBUTES_BYTES:
        detail = f"the report is {len(body)} bytes, over the limit of {MAX_ATTRIBUTES_BYTES}"
        return Reject(-1, Reason.TOO_LARGE, detail)
    try:
        document = JSON_VALUE.validate_json(body)
    except ValidationError as exc:
        return malformed(exc).rejects[0]
    if not isinstance(document, dict):
        return Reject(-1, Reason.SCHEMA, "attributes must be a JSON object")
    if len(document) > MAX_ATTRIBUTES:
        detail = f"{len(document)} attributes, more than the limit of {MAX_ATTRIBUTES}"
        return Reject(-1, Reason.SCHEMA, detail)
    if _holds_nul(document):
        return Reject(-1, Reason.SCHEMA, "attributes hold a NUL character, which cannot be stored")
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def _holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False
