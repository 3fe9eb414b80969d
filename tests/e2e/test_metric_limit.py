"""A full metric dictionary over real HTTP: new names rejected by reason, the rest stored."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from ingest.metric_keys import MAX_METRICS
from tests.e2e.helpers import NOW, count_readings, new_device, post, reasons
from tests.support.processes import ServiceProcess


@pytest.mark.parametrize("storage_mode", ["plain"])
async def test_new_names_past_the_limit_are_rejected_not_failed(
    db_url: str, storage_mode: str, ingest_factory: Callable[..., ServiceProcess]
) -> None:
    token = await new_device(db_url, "many-1")
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("ALTER TABLE metrics ALTER COLUMN metric_key RESTART WITH {}").format(
                sql.Literal(MAX_METRICS)
            )
        )
    ingest = ingest_factory(workers=1)
    ts = NOW.isoformat()
    assert (await post(ingest.url, token, {"ts": ts, "values": {"last": 1}}))[0] == 200
    batch = [
        {"ts": ts, "values": {"last": 2, "one_more": 1}},
        {"ts": ts, "values": {"t": 1}},
        {"ts": NOW.replace(microsecond=1).isoformat(), "values": {"last": 3}},
    ]
    # The accept step creates new metrics before the batch is written: a refused name is
    # rejected at once, with no push back and no resend.
    status, body, _ = await post(ingest.url, token, batch)
    assert status == 200
    assert body["accepted"] == 1
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == [
        (0, "too_many_metrics"),
        (1, "too_many_metrics"),
    ]
    assert count_readings(db_url) == 2
    assert reasons(db_url) == ["too_many_metrics", "too_many_metrics"]
