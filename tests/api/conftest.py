"""Fixtures of the query API tests: an in-process server on a fresh database per test."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from api import ApiSettings, create_app
from core.settings import DatabaseSettings

ADMIN_KEY = "ak_test-admin-key-0123456789abcdefghijklmnopqrstu"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}

ClientFactory = Callable[..., Awaitable[TestClient]]  # type: ignore[type-arg]


def api_settings(**overrides: object) -> ApiSettings:
    values: dict[str, object] = {"api_admin_key": ADMIN_KEY, "api_rate_per_key": 10_000.0}
    values["api_burst_per_key"] = 10_000
    return ApiSettings(**(values | overrides))  # type: ignore[arg-type]


@pytest.fixture
async def client(db_url: str, aiohttp_client: ClientFactory) -> TestClient:  # type: ignore[type-arg]
    """A client of an API served from ``db_url`` (both storage paths), admin key known."""
    app = create_app(api_settings(), DatabaseSettings(database_url=db_url, db_pool_min=1))
    return await aiohttp_client(app)
