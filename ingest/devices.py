"""Which registered device a token or a topic names: the registry behind a small cache.

A revoked or rotated token keeps working in other processes for at most ``ttl_s``;
unknown tokens and ids are remembered for ``negative_ttl_s`` so that a device hammering
with a bad token costs no query per request. A gateway's children are looked up and cached
the same way: a child attached through the API is accepted within ``negative_ttl_s``, and
a detached one refused within ``ttl_s``. Lookups run on a connection lent by the
writer, so a database failure arrives as :class:`~ingest.errors.StorageError`.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from core.registry import (
    DeviceRef,
    child_of,
    device_by_id,
    device_by_token,
    devices_by_ids,
    hash_token,
    register_device_without_token,
)

__all__ = ["MISS", "DeviceDirectory", "Lender", "Miss"]

log = logging.getLogger(__name__)

#: Lends a database connection (``BatchWriter.connection``).
Lender = Callable[[], AbstractAsyncContextManager[AsyncConnection[TupleRow]]]

_Cache = dict[Any, tuple[float, DeviceRef | None]]


class Miss(enum.Enum):
    """Marks a cache miss (None is a cached "no such device")."""

    MISS = "miss"


MISS = Miss.MISS


class DeviceDirectory:
    """Token and id lookups with a time-bounded cache; optional MQTT auto-registration."""

    def __init__(
        self,
        lend: Lender,
        *,
        auto_register: bool = False,
        ttl_s: float = 30.0,
        negative_ttl_s: float = 5.0,
        max_entries: int = 100_000,
    ) -> None:
        self._lend = lend
        self.auto_register = auto_register
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self.max_entries = max_entries
        self._by_digest: _Cache = {}
        self._by_id: _Cache = {}
        self._children: _Cache = {}  # (gateway key, child id) -> the child

    def cached_id(self, device_id: str) -> DeviceRef | Miss | None:
        """Return the cached answer for ``device_id``, or MISS when a query is needed.

        Synchronous, for the hot path: a hit costs no coroutine.
        """
        return self._peek(self._by_id, device_id)

    async def by_token(self, token: str) -> DeviceRef | None:
        """Return the device owning ``token``, or None."""
        digest = hash_token(token)
        cached = self._peek(self._by_digest, digest)
        if not isinstance(cached, Miss):
            return cached
        async with self._lend() as conn:
            ref = await device_by_token(conn, digest)
        self._remember(self._by_digest, digest, ref)
        return ref

    async def by_id(self, device_id: str, *, register: bool = True) -> DeviceRef | None:
        """Return the device called ``device_id`` (registering it with AUTO_REGISTER), or None.

        ``register=False`` never registers: for what a device says about itself, which a
        broker may replay long after the device was deleted.
        """
        cached = self._peek(self._by_id, device_id)
        if not isinstance(cached, Miss):
            return cached
        async with self._lend() as conn:
            ref = await device_by_id(conn, device_id)
            if ref is None and not register:
                return None  # not remembered: telemetry may yet register it
            if ref is None and self.auto_register:
                ref = await register_device_without_token(conn, device_id)
                log.info("device %s registered automatically (AUTO_REGISTER=true)", device_id)
        self._remember(self._by_id, device_id, ref)
        return ref

    async def prefetch(self, device_ids: set[str]) -> None:
        """Look up every uncached one of ``device_ids`` in one query, to cache the answers.

        For a batch of MQTT messages from many devices: one round trip instead of one a
        device. Unknown ids are cached as unknown unless devices register automatically
        (then ``by_id`` registers each as it comes).
        """
        missing = [d for d in device_ids if isinstance(self._peek(self._by_id, d), Miss)]
        if len(missing) < 2:
            return  # by_id asks for a single one as cheaply
        async with self._lend() as conn:
            found = await devices_by_ids(conn, missing)
        for device_id in missing:
            ref = found.get(device_id)
            if ref is not None or not self.auto_register:
                self._remember(self._by_id, device_id, ref)

    def cached_child(self, gateway: DeviceRef, device_id: str) -> DeviceRef | Miss | None:
        """Return the cached answer for a child of ``gateway``, or MISS (synchronous)."""
        return self._peek(self._children, (gateway.device_key, device_id))

    async def child(self, gateway: DeviceRef, device_id: str) -> DeviceRef | None:
        """Return ``device_id`` if it is attached to ``gateway``, else None."""
        key = (gateway.device_key, device_id)
        cached = self._peek(self._children, key)
        if not isinstance(cached, Miss):
            return cached
        async with self._lend() as conn:
            ref = await child_of(conn, gateway, device_id)
        self._remember(self._children, key, ref)
        return ref

    def forget(self, device_id: str) -> None:
        """Drop cached entries of ``device_id`` in this process (after delete or rotation)."""
        self._by_id.pop(device_id, None)
        for digest, (_, ref) in list(self._by_digest.items()):
            if ref is not None and ref.device_id == device_id:
                del self._by_digest[digest]

    def _remember(self, cache: _Cache, key: object, ref: DeviceRef | None) -> None:
        if len(cache) >= self.max_entries:
            cache.clear()  # crude, but bounded; a full cache only costs re-queries
        ttl = self.ttl_s if ref is not None else self.negative_ttl_s
        cache[key] = (time.monotonic() + ttl, ref)

    @staticmethod
    def _peek(cache: _Cache, key: object) -> DeviceRef | Miss | None:
        hit = cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return MISS
