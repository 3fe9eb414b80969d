"""Device registry: devices with secret tokens, found by token or id, tokens rotated.

A device may be a gateway, which sends readings for the devices attached to it (its
children, found by :func:`child_of`).

Tokens are 256 random bits, shown once and stored only as their SHA-256 digest (a slow
password hash buys nothing for secrets with that much entropy). A lookup finds the row by
digest and then compares digests in constant time, so neither the index nor the comparison
tells an attacker how close a guess came.

Every function runs on a connection the caller lends; database failures other than a taken
device id are translated by the lender (see :mod:`core.errors`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from core.errors import DeviceExistsError

__all__ = [
    "DeviceRef",
    "NewDevice",
    "child_of",
    "create_device",
    "device_by_id",
    "device_by_token",
    "devices_by_ids",
    "generate_token",
    "hash_token",
    "register_device_without_token",
    "rotate_token",
]

_TOKEN_PREFIX = "dt_"  # noqa: S105  (a prefix that makes leaked tokens easy to scan for)

_INSERT_DEVICE = """
INSERT INTO devices (device_id, name, metadata, token_hash, expected_interval_s, gateway)
VALUES (%s, %s, %s::jsonb, %s, %s, %s) RETURNING device_key
"""
_UPSERT_TOKENLESS = """
INSERT INTO devices (device_id) VALUES (%s)
ON CONFLICT (device_id) DO UPDATE SET device_id = excluded.device_id
RETURNING device_key, gateway
"""
_SET_TOKEN = "UPDATE devices SET token_hash = %s WHERE device_id = %s"  # noqa: S105
_BY_TOKEN = "SELECT device_key, device_id, token_hash, gateway FROM devices WHERE token_hash = %s"  # noqa: S105
_BY_ID = "SELECT device_key, gateway FROM devices WHERE device_id = %s"
# %b: the ids as a binary array, which psycopg builds several times faster than a text one
# (no quoting); one query a group of MQTT messages from devices not in the cache.
_BY_IDS = "SELECT device_key, device_id, gateway FROM devices WHERE device_id = ANY(%b::text[])"
_CHILD = "SELECT device_key FROM devices WHERE device_id = %s AND gateway_key = %s"


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """A registered device as the intake sees it; a ``gateway`` may send for its children."""

    device_key: int
    device_id: str
    gateway: bool = False


@dataclass(frozen=True, slots=True)
class NewDevice:
    """A device just created: its token is shown now and never again."""

    device_key: int
    device_id: str
    token: str


def generate_token() -> str:
    """Return a new device token with 256 bits of randomness."""
    return _TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    """Digest under which a token is stored."""
    return hashlib.sha256(token.encode()).digest()


async def create_device(
    conn: AsyncConnection[TupleRow],
    device_id: str,
    *,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
    expected_interval_s: int | None = None,
    gateway: bool = False,
) -> NewDevice:
    """Register ``device_id`` with a fresh token; DeviceExistsError if it is taken."""
    token = generate_token()
    params = [
        device_id,
        name,
        json.dumps(metadata or {}),
        hash_token(token),
        expected_interval_s,
        gateway,
    ]
    try:
        async with conn.transaction():
            row = await (await conn.execute(_INSERT_DEVICE, params)).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise DeviceExistsError(f"device {device_id!r} already exists") from exc
    assert row is not None
    return NewDevice(int(row[0]), device_id, token)


async def register_device_without_token(
    conn: AsyncConnection[TupleRow], device_id: str
) -> DeviceRef:
    """Find or create ``device_id`` with no token (MQTT auto-registration)."""
    row = await (await conn.execute(_UPSERT_TOKENLESS, [device_id])).fetchone()
    assert row is not None
    return DeviceRef(int(row[0]), device_id, bool(row[1]))


async def rotate_token(conn: AsyncConnection[TupleRow], device_id: str) -> str | None:
    """Give ``device_id`` a new token (the old one stops working); None if no such device."""
    token = generate_token()
    cur = await conn.execute(_SET_TOKEN, [hash_token(token), device_id])
    return token if cur.rowcount == 1 else None


async def device_by_token(conn: AsyncConnection[TupleRow], digest: bytes) -> DeviceRef | None:
    """Return the device whose token has the SHA-256 ``digest``, or None."""
    row = await (await conn.execute(_BY_TOKEN, [digest])).fetchone()
    if row is None or not hmac.compare_digest(bytes(row[2]), digest):
        return None
    return DeviceRef(int(row[0]), str(row[1]), bool(row[3]))


async def device_by_id(conn: AsyncConnection[TupleRow], device_id: str) -> DeviceRef | None:
    """Return the registered device called ``device_id``, or None."""
    row = await (await conn.execute(_BY_ID, [device_id])).fetchone()
    return None if row is None else DeviceRef(int(row[0]), device_id, bool(row[1]))


async def child_of(
    conn: AsyncConnection[TupleRow], gateway: DeviceRef, device_id: str
) -> DeviceRef | None:
    """Return ``device_id`` if it is attached to ``gateway``, else None."""
    row = await (await conn.execute(_CHILD, [device_id, gateway.device_key])).fetchone()
    return None if row is None else DeviceRef(int(row[0]), device_id)


async def devices_by_ids(
    conn: AsyncConnection[TupleRow], device_ids: list[str]
) -> dict[str, DeviceRef]:
    """Return the registered devices among ``device_ids`` (one query), by id."""
    rows = await (await conn.execute(_BY_IDS, [device_ids])).fetchall()
    return {str(row[1]): DeviceRef(int(row[0]), str(row[1]), bool(row[2])) for row in rows}
