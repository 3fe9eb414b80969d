"""A full metric dictionary: new names are refused by reason, never by a database error."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from core.registry import DeviceRef
from ingest.catalog import Catalog
from ingest.devices import DeviceDirectory
from ingest.errors import MetricLimitError
from ingest.intake import Intake, IntakeRules, accept
from ingest.metric_keys import MAX_METRICS
from ingest.pipeline import Pipeline, PipelineSettings, Submission
from ingest.wire import Format, Limits, Reason
from ingest.writer import BatchWriter
from tests.ingest.helpers import T0, add_device, fetch_all, open_writer


@pytest.fixture
async def nearly_full(db_url: str, storage_mode: str) -> AsyncIterator[tuple[BatchWriter, int]]:
    """A writer whose dictionary has room for two more names, and a device."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        key = await add_device(conn, "many")
        await conn.execute(
            sql.SQL("ALTER TABLE metrics ALTER COLUMN metric_key RESTART WITH {}").format(
                sql.Literal(MAX_METRICS - 1)
            )
        )
    async with open_writer(db_url, storage_mode) as writer:
        yield writer, key


async def test_the_batch_that_fills_the_dictionary_pushes_back_without_a_database_error(
    nearly_full: tuple[BatchWriter, int], db_url: str
) -> None:
    writer, key = nearly_full
    await writer.write([(key, T0, {"a": 1.0, "b": 2.0})])  # the last two keys
    full = [writer.metric_keys.full]
    with pytest.raises(MetricLimitError, match="metric dictionary is full"):
        await writer.write([(key, T0 + timedelta(seconds=1), {"a": 3.0, "c": 4.0})])
    full.append(writer.metric_keys.full)
    assert full == [False, True]
    # Nothing of the refused batch is stored; names that have keys go on working.
    assert await fetch_all(db_url, "SELECT count(*) FROM readings") == [(2,)]
    result = await writer.write([(key, T0 + timedelta(seconds=2), {"a": 5.0, "b": 6.0})])
    assert result.accepted == 2
    rows = await fetch_all(db_url, "SELECT max(metric_key) FROM metrics")
    assert rows == [(MAX_METRICS,)]


async def test_once_full_the_intake_refuses_items_with_new_names_as_too_many_metrics(
    nearly_full: tuple[BatchWriter, int],
) -> None:
    writer, key = nearly_full
    await writer.write([(key, T0, {"a": 1.0, "b": 2.0})])
    with pytest.raises(MetricLimitError):
        await writer.write([(key, T0, {"c": 1.0})])
    rules = IntakeRules(Limits(), timedelta(days=36500), metrics=writer.metric_keys)
    ts = (T0 + timedelta(seconds=5)).isoformat()
    body = json.dumps(
        [
            {"ts": ts, "values": {"a": 1.0}},
            {"ts": ts, "values": {"a": 1.0, "c": 2.0}},
            {"ts": ts, "values": {"b": 1.0}},
        ]
    ).encode()
    sub = Submission(datetime.now(UTC))
    intake = Intake(
        pipeline=Pipeline(writer, PipelineSettings()),
        devices=DeviceDirectory(writer.connection),
        catalog=Catalog(writer.connection),
        rules=rules,
    )
    verdict = await accept(
        sub, body, Format.JSON, DeviceRef(key, "many"), source="http", intake=intake
    )
    assert [(r.index, r.reason) for r in verdict.rejects] == [(1, Reason.TOO_MANY_METRICS)]
    assert "(c)" in verdict.rejects[0].detail
    assert [dict(values) for _, _, values in sub.sets] == [{"a": 1.0}, {"b": 1.0}]
    assert [d.reason for d in sub.dead_letters] == ["too_many_metrics"]
    # The accepted items are stored.
    assert (await writer.write(sub.sets, dead_letters=sub.dead_letters)).accepted == 2
