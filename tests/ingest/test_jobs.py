"""The storage jobs' schedule: a job that is running when the worker stops is waited for."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from ingest import maintenance
from ingest.jobs import StorageJobs
from ingest.settings import StorageSettings


@pytest.mark.parametrize("storage_mode", ["plain"])
async def test_closing_waits_for_the_running_job_to_finish(
    db_url: str, storage_mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[datetime] = []

    async def slow_refresh(conn: maintenance.Conn, now: datetime) -> None:
        started.set()
        await release.wait()
        finished.append(now)

    monkeypatch.setattr(maintenance, "refresh_rollups", slow_refresh)
    storage = StorageSettings(rollup_refresh_interval_s=3600)
    schedule = StorageJobs(db_url, storage, "plain", shutdown_timeout_s=30)
    await schedule.open()
    async with asyncio.timeout(20):
        await started.wait()  # the refresh runs at once, then hourly
    closing = asyncio.create_task(schedule.close())
    await asyncio.sleep(0)
    assert not closing.done()  # still waiting for the refresh
    release.set()
    async with asyncio.timeout(20):
        await closing
    assert len(finished) == 1


@pytest.mark.parametrize("storage_mode", ["plain"])
async def test_a_job_that_outlasts_the_limit_is_cancelled(
    db_url: str, storage_mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def stuck_refresh(conn: maintenance.Conn, now: datetime) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    monkeypatch.setattr(maintenance, "refresh_rollups", stuck_refresh)
    schedule = StorageJobs(db_url, StorageSettings(), "plain", shutdown_timeout_s=0.1)
    await schedule.open()
    async with asyncio.timeout(20):
        await started.wait()
    await schedule.close()
    assert cancelled == [True]
