"""Device registry: create devices with secret tokens, authenticate tokens, rotate them.

Tokens are 256 random bits, shown once and stored only as their SHA-256 digest (a slow
password hash buys nothing for secrets with that much entropy). A lookup finds the row by
digest and then compares digests in constant time, so neither the index nor the comparison
tells an attacker how close a guess came.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from ingest.errors import IngestError

__all__ = [
    "DeviceAuthenticator",
    "DeviceExistsError",
    "DeviceRef",
    "Miss",
    "NewDevice",
    "create_device",
    "generate_token",
    "hash_token",
    "register_device_without_token",
    "rotate_token",
]

_TOKEN_PREFIX = "dt_"  # noqa: S105  (a prefix that makes leaked tokens easy to scan for)


class DeviceExistsError(IngestError):
    """A device with that id is already registered."""


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """A registered device as the intake sees it."""

    device_key: int
    device_id: str


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
) -> NewDevice:
    """Register ``device_id`` with a fresh token; DeviceExistsError if it is taken."""
    token = generate_token()
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "INSERT INTO devices (device_id, name, metadata, token_hash, expected_interval_s)"
                " VALUES (%s, %s, %s::jsonb, %s, %s) RETURNING device_key",
                [
                    device_id,
                    name,
                    json.dumps(metadata or {}),
                    hash_token(token),
                    expected_interval_s,
                ],
            )
            row = await cur.fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise DeviceExistsError(f"device {device_id!r} already exists") from exc
    assert row is not None
    return NewDevice(int(row[0]), device_id, token)


async def register_device_without_token(
    conn: AsyncConnection[TupleRow], device_id: str
) -> DeviceRef:
    """Find or create ``device_id`` with no token (MQTT auto-registration)."""
    cur = await conn.execute(
        "INSERT INTO devices (device_id) VALUES (%s) ON CONFLICT (device_id) DO UPDATE"
        " SET device_id = excluded.device_id RETURNING device_key",
        [device_id],
    )
    row = await cur.fetchone()
    assert row is not None
    return DeviceRef(int(row[0]), device_id)


async def rotate_token(conn: AsyncConnection[TupleRow], device_id: str) -> str | None:
    """Give ``device_id`` a new token (the old one stops working); None if no such device."""
    token = generate_token()
    cur = await conn.execute(
        "UPDATE devices SET token_hash = %s WHERE device_id = %s", [hash_token(token), device_id]
    )
    return token if cur.rowcount == 1 else None


class Miss(enum.Enum):
    """Marks a cache miss (None is a cached "no such device")."""

    MISS = "miss"


MISS = Miss.MISS


class DeviceAuthenticator:
    """Token and id lookups with a small time-bounded cache.

    A revoked or rotated token keeps working in other processes for at most
    ``ttl_s``; unknown tokens are remembered for ``negative_ttl_s`` so that a device
    hammering with a bad token costs no query per request.
    """

    def __init__(
        self, *, ttl_s: float = 30.0, negative_ttl_s: float = 5.0, max_entries: int = 100_000
    ) -> None:
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self.max_entries = max_entries
        self._by_digest: dict[bytes, tuple[float, DeviceRef | None]] = {}
        self._by_id: dict[str, tuple[float, DeviceRef | None]] = {}

    def _remember(
        self, cache: dict[Any, tuple[float, DeviceRef | None]], key: object, ref: DeviceRef | None
    ) -> None:
        if len(cache) >= self.max_entries:
            cache.clear()  # crude, but bounded; a full cache only costs re-queries
        ttl = self.ttl_s if ref is not None else self.negative_ttl_s
        cache[key] = (time.monotonic() + ttl, ref)

    def cached_token(self, token: str) -> DeviceRef | Miss | None:
        """Return the cached answer for ``token``, or MISS when a query is needed."""
        return self._peek(self._by_digest, hash_token(token))

    def cached_id(self, device_id: str) -> DeviceRef | Miss | None:
        """Return the cached answer for ``device_id``, or MISS when a query is needed."""
        return self._peek(self._by_id, device_id)

    @staticmethod
    def _peek(
        cache: dict[Any, tuple[float, DeviceRef | None]], key: object
    ) -> DeviceRef | Miss | None:
        hit = cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return MISS

    async def by_token(self, conn: AsyncConnection[TupleRow], token: str) -> DeviceRef | None:
        """Return the device owning ``token``, or None."""
        digest = hash_token(token)
        cached = self._peek(self._by_digest, digest)
        if not isinstance(cached, Miss):
            return cached
        cur = await conn.execute(
            "SELECT device_key, device_id, token_hash FROM devices WHERE token_hash = %s", [digest]
        )
        row = await cur.fetchone()
        ref = None
        if row is not None and hmac.compare_digest(bytes(row[2]), digest):
            ref = DeviceRef(int(row[0]), str(row[1]))
        self._remember(self._by_digest, digest, ref)
        return ref

    async def by_id(self, conn: AsyncConnection[TupleRow], device_id: str) -> DeviceRef | None:
        """Return the registered device called ``device_id``, or None."""
        cached = self._peek(self._by_id, device_id)
        if not isinstance(cached, Miss):
            return cached
        cur = await conn.execute("SELECT device_key FROM devices WHERE device_id = %s", [device_id])
        row = await cur.fetchone()
        ref = DeviceRef(int(row[0]), device_id) if row is not None else None
        self._remember(self._by_id, device_id, ref)
        return ref

    def forget(self, device_id: str) -> None:
        """Drop cached entries of ``device_id`` in this process (after delete or rotation)."""
        self._by_id.pop(device_id, None)
        for digest, (_, ref) in list(self._by_digest.items()):
            if ref is not None and ref.device_id == device_id:
                del self._by_digest[digest]
