"""API keys: creation, hashing and request authentication with scopes and rate limits.

Keys are 256 random bits (``ak_`` + 43 URL-safe characters), shown once and stored only
as their SHA-256 digest; lookups go by digest and the digests are compared in constant
time. ``API_ADMIN_KEY`` from the environment is accepted as an admin key without a row.
Successful lookups are cached for ``ttl_s``: a revoked key keeps working that long.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from api import queries
from api.database import Database
from api.errors import ForbiddenError, RateLimitedError, UnauthorizedError
from core.ratelimit import TokenBuckets

__all__ = ["KeyStore", "Principal", "Scope", "create_key", "generate_key", "hash_key"]

Scope = Literal["read", "admin"]

_KEY_PREFIX = "ak_"


def generate_key() -> str:
    """Return a new API key with 256 bits of randomness."""
    return _KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    """Return the digest under which a key is stored."""
    return hashlib.sha256(key.encode()).digest()


async def create_key(conn: AsyncConnection[TupleRow], scope: Scope, name: str = "") -> str:
    """Store a new key with ``scope`` and return it (the only time it is seen)."""
    key = generate_key()
    await conn.execute(queries.CREATE_KEY, [hash_key(key), scope, name])
    return key


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a stored key (``key_id``) or the bootstrap key (``key_id`` None)."""

    key_id: int | None
    scope: Scope


class KeyStore:
    """Authenticates ``Authorization: Bearer`` headers and applies per-key rate limits."""

    def __init__(
        self,
        admin_key: str | None,
        rate_limits: TokenBuckets,
        *,
        ttl_s: float = 10.0,
        max_entries: int = 10_000,
    ) -> None:
        self._admin_digest = hash_key(admin_key) if admin_key else None
        self._rate_limits = rate_limits
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._cache: dict[bytes, tuple[float, Principal | None]] = {}

    async def authenticate(
        self, db: Database, authorization: str | None, needs: Scope
    ) -> Principal:
        """Return the caller behind ``authorization``; 401, 403 or 429 as RequestErrors."""
        scheme, _, key = (authorization or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise UnauthorizedError("send Authorization: Bearer <api key>")
        digest = hash_key(key)
        principal = await self._lookup(db, digest)
        if principal is None:
            raise UnauthorizedError("unknown or revoked API key")
        if needs == "admin" and principal.scope != "admin":
            raise ForbiddenError("this operation needs a key with admin scope")
        wait_s = self._rate_limits.take(digest)
        if wait_s:
            raise RateLimitedError("this API key is over its request rate", max(1, round(wait_s)))
        return principal

    async def _lookup(self, db: Database, digest: bytes) -> Principal | None:
        if self._admin_digest is not None and hmac.compare_digest(digest, self._admin_digest):
            return Principal(None, "admin")
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        async with db.connection() as conn:
            cur = await conn.execute(queries.KEY_BY_HASH, [digest])
            row = await cur.fetchone()
        principal = None
        if row is not None and hmac.compare_digest(bytes(row[1]), digest):
            principal = Principal(int(row[0]), "admin" if row[2] == "admin" else "read")
        if len(self._cache) >= self._max_entries:
            self._cache.clear()  # bounded; a cleared cache only costs lookups
        # Misses are remembered briefly too, so a client hammering a bad key costs no query.
        self._cache[digest] = (time.monotonic() + (self._ttl_s if principal else 2.0), principal)
        return principal
