"""The alert service: one evaluator at a time, a successor when it goes, delivery after commit.

Two services on one database stand for two ingest hosts. Each waits on a fact (an
evaluation counted, a notification received), with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ingest.alerts import EVALUATOR_LOCK, AlertService
from ingest.settings import AlertSettings
from tests.ingest.alert_helpers import add_rule, add_webhook
from tests.ingest.helpers import add_device, open_writer

INTERVAL_S = 0.2


async def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _service(db_url: str) -> AlertService:
    return AlertService(db_url, AlertSettings(alert_eval_interval_s=INTERVAL_S), "plain")


@pytest.mark.parametrize("storage_mode", ["plain"])
async def test_a_second_evaluator_waits_and_takes_over_when_the_first_stops(
    db_url: str, storage_mode: str
) -> None:
    first, second = _service(db_url), _service(db_url)
    async with first:
        await wait_for("the first to lead", lambda: first.evaluations >= 1)
        async with second:
            start = first.evaluations
            # Ten of the first's evaluations: the second has tried the lock about as often.
            await wait_for("ten evaluations", lambda: first.evaluations >= start + 10)
            assert (first.leading, second.leading) == (True, False)
            assert second.evaluations == 0
            await first.close()
            await wait_for("the second to take over", lambda: second.evaluations >= 3)
            assert second.leading


@pytest.mark.parametrize("storage_mode", ["plain"])
async def test_the_lock_goes_with_the_holders_connection(db_url: str, storage_mode: str) -> None:
    first, second = _service(db_url), _service(db_url)
    async with first, second:
        await wait_for("a leader", lambda: first.evaluations + second.evaluations >= 3)
        leader, other = (first, second) if first.leading else (second, first)
        assert not other.leading
        # As when the holder's process dies: PostgreSQL ends its session, and the lock with it.
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND objid = %s AND granted",
                [EVALUATOR_LOCK],
            )
        before = leader.evaluations + other.evaluations
        await wait_for(
            "evaluations again", lambda: leader.evaluations + other.evaluations >= before + 5
        )
        assert [first.leading, second.leading].count(True) == 1


@pytest.mark.parametrize("storage_mode", ["plain"])
async def test_a_firing_alert_is_delivered_after_the_evaluation_that_decided_it(
    db_url: str, storage_mode: str
) -> None:
    received: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app)
    await server.start_server()
    try:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            key = await add_device(conn, "kiln-1")
            await add_rule(
                conn, metric="temperature", agg="last", window_s=600, op=">", threshold=900
            )
            await add_webhook(conn, str(server.make_url("/hook")))
        async with open_writer(db_url, storage_mode) as writer:
            await writer.write([(key, datetime.now(UTC), {"temperature": 1200.0})])
        async with _service(db_url):
            await wait_for("the notification", lambda: bool(received))
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            cur = await conn.execute("SELECT state, attempts FROM alert_notifications")
            assert await cur.fetchall() == [("delivered", 1)]
    finally:
        await server.close()
    assert b'"status":"firing"' in received[0]
