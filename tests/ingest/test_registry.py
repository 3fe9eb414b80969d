"""Device registry: tokens hashed at rest, cached lookups, rotation."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg.rows import TupleRow

from core.errors import DeviceExistsError
from core.registry import (
    DeviceRef,
    create_device,
    generate_token,
    hash_token,
    register_device_without_token,
    rotate_token,
)
from ingest.devices import DeviceDirectory, Lender, Miss
from tests.ingest.helpers import fetch_all


def _lending(conn: psycopg.AsyncConnection[TupleRow]) -> Lender:
    @contextlib.asynccontextmanager
    async def lend() -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        yield conn

    return lend


def test_tokens_are_long_random_and_distinct() -> None:
    tokens = {generate_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(len(t) >= 43 + 3 for t in tokens)
    assert hash_token("a") != hash_token("b")
    assert len(hash_token("a")) == 32


async def test_create_authenticate_and_rotate(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        new = await create_device(
            conn, "pump-17", name="Pump", metadata={"site": "north"}, expected_interval_s=60
        )
        with pytest.raises(DeviceExistsError, match="pump-17"):
            await create_device(conn, "pump-17")
        auth = DeviceDirectory(_lending(conn))
        ref = await auth.by_token(new.token)
        assert ref is not None
        assert (ref.device_key, ref.device_id) == (new.device_key, "pump-17")
        assert await auth.by_token(new.token + "x") is None
        assert await auth.by_id("pump-17") == ref
        assert await auth.by_id("nobody") is None

        rotated = await rotate_token(conn, "pump-17")
        assert rotated is not None
        assert rotated != new.token
        assert await rotate_token(conn, "nobody") is None
        # Cached in this process until forgotten (other processes: until the TTL runs out).
        assert await auth.by_token(new.token) == ref
        auth.forget("pump-17")
        assert await auth.by_token(new.token) is None
        assert await auth.by_token(rotated) == ref

        again = await register_device_without_token(conn, "pump-17")
        assert again == ref
        fresh = await register_device_without_token(conn, "auto-1")
        assert fresh.device_key != ref.device_key
    stored = await fetch_all(
        db_url, "SELECT token_hash, metadata FROM devices WHERE device_id = 'pump-17'"
    )
    assert stored == [(hash_token(rotated), {"site": "north"})]


async def test_negative_lookups_are_cached_briefly(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        auth = DeviceDirectory(_lending(conn), negative_ttl_s=60)
        assert await auth.by_id("late-1") is None
        await register_device_without_token(conn, "late-1")
        assert await auth.by_id("late-1") is None
        auth.forget("late-1")
        assert await auth.by_id("late-1") is not None


async def test_auto_registration_creates_a_tokenless_device_once(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        auth = DeviceDirectory(_lending(conn), auto_register=True)
        first = await auth.by_id("auto-7")
        auth.forget("auto-7")
        assert await auth.by_id("auto-7") == first
    assert first is not None
    stored = await fetch_all(db_url, "SELECT token_hash FROM devices WHERE device_id = 'auto-7'")
    assert stored == [(None,)]


async def test_prefetch_looks_up_a_batch_of_devices_in_one_query(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        refs = [await create_device(conn, f"many-{i}") for i in range(3)]
        lent = 0

        @contextlib.asynccontextmanager
        async def counting() -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
            nonlocal lent
            lent += 1
            yield conn

        auth = DeviceDirectory(counting)
        await auth.prefetch({"many-0", "many-1", "many-2", "stranger"})
        assert lent == 1
        for ref in refs:
            assert auth.cached_id(ref.device_id) == DeviceRef(ref.device_key, ref.device_id)
        assert auth.cached_id("stranger") is None  # known to be unknown
        await auth.prefetch({"many-0", "many-1"})  # all cached: no query
        assert lent == 1

        auto = DeviceDirectory(counting, auto_register=True)
        await auto.prefetch({"many-0", "newcomer"})
        assert lent == 2
        assert isinstance(auto.cached_id("newcomer"), Miss)  # left for by_id to register
        assert await auto.by_id("newcomer") is not None
