"""Opaque keyset cursors: the position after the last item of a page."""

from __future__ import annotations

import base64
import binascii
import json

from api.errors import BadRequestError

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(*position: str | int) -> str:
    """Return an opaque cursor for ``position``."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *types: type) -> tuple[object, ...]:
    """Return the position in ``cursor``, checked against ``types``; 400 when it is not ours."""
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise BadRequestError("cursor: not a cursor this API gave out") from exc
    if (
        not isinstance(position, list)
        or len(position) != len(types)
        or not all(type(v) is t for v, t in zip(position, types, strict=True))
    ):
        raise BadRequestError("cursor: not a cursor this API gave out")
    return tuple(position)
