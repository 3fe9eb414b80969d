"""Retention per tier on both paths: each tier drops what is older than its own horizon."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import pytest

from core.retention import TIERS
from ingest.settings import StorageSettings
from tests.ingest.helpers import (
    AGES_DAYS,
    KEPT_AGES,
    fetch_all,
    migrate_tiered,
    run_retention,
    store_ages,
)


def test_retention_days_is_the_raw_tiers_old_name() -> None:
    assert StorageSettings(retention_days=30).tiers.days("raw") == 30
    tiers = StorageSettings(retention_days=30, retention_raw_days=7, retention_1h_days=90).tiers
    assert [tiers.days(t) for t in TIERS] == [7, 7, 90, 90]


def test_a_coarser_tier_kept_shorter_than_a_finer_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"the 1h tier \(10 days\) must be kept at least as long"):
        StorageSettings(retention_raw_days=30, retention_1h_days=10)


async def test_each_tier_drops_what_is_older_than_its_own_horizon(
    db_url: str, storage_mode: str
) -> None:
    storage = await migrate_tiered(db_url, storage_mode)
    now = datetime.now(UTC)
    await store_ages(db_url, storage_mode, "meter", now)
    await run_retention(db_url, storage_mode, storage)
    for table, kept in KEPT_AGES.items():
        assert await ages_in(db_url, table) == kept, table


async def ages_in(url: str, table: str) -> set[int]:
    """Which of ``AGES_DAYS`` ``table`` holds rows of (a day bucket starts up to a day early)."""
    column = "time" if table == "readings" else "bucket"
    rows = await fetch_all(
        url,
        f"SELECT extract(epoch FROM now() - {column})::float8 / 86400 FROM {table}",
    )
    return {min(AGES_DAYS, key=lambda age: abs(cast("float", r[0]) - age - 0.5)) for r in rows}
