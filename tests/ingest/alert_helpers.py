"""Helpers of the alert tests: rules and webhooks in the database, a clock driven by data."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from ingest.alerts import Evaluation, EvaluationContext, evaluate, prepare
from tests.ingest.helpers import T0, mode_of

Conn = psycopg.AsyncConnection[TupleRow]

_RULE_DEFAULTS: dict[str, Any] = {
    "name": "rule",
    "kind": "threshold",
    "severity": "warning",
    "for_s": 0,
    "renotify_s": 0,
    "created_at": T0,
}


async def add_rule(conn: Conn, **fields: Any) -> int:
    """Store a rule (threshold by default, created at T0); return its id.

    Comparisons default their clear threshold to the threshold, as the API does.
    """
    values = _RULE_DEFAULTS | fields
    if values.get("op") not in (None, "outside"):
        values.setdefault("clear_threshold", values["threshold"])
    if values.get("op") == "outside":
        values.setdefault("clear_low", values["low"])
        values.setdefault("clear_high", values["high"])
    if values["kind"] == "offline":
        values.setdefault("factor", 3.0)
    for name in ("labels", "selector"):
        if name in values:
            values[name] = Jsonb(values[name])
    columns = ", ".join(values)
    placeholders = ", ".join(f"%({name})s" for name in values)
    cur = await conn.execute(
        f"INSERT INTO alert_rules ({columns}) VALUES ({placeholders}) RETURNING rule_id".encode(),
        values,
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def add_webhook(conn: Conn, url: str, fmt: str = "json", secret: str = "whsec_test") -> int:
    cur = await conn.execute(
        "INSERT INTO alert_webhooks (url, format, secret) VALUES (%s, %s, %s) RETURNING webhook_id",
        [url, fmt, secret],
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@dataclass
class Evaluator:
    """Evaluates on one prepared connection at the times a test gives."""

    conn: Conn
    context: EvaluationContext

    async def at(self, now: datetime) -> Evaluation:
        return await evaluate(self.conn, now, self.context)

    async def rows(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        cur = await self.conn.execute(query.encode(), params or None)
        return list(await cur.fetchall())

    async def states(self) -> dict[tuple[int, str], str]:
        rows = await self.rows("SELECT rule_id, device_id, state FROM alert_states")
        return {(r[0], r[1]): r[2] for r in rows}

    async def events(self, rule_id: int | None = None) -> list[tuple[datetime, str, str]]:
        """(at, device_id, event) in order, of one rule or all."""
        rows = await self.rows(
            "SELECT at, device_id, event, rule_id FROM alert_events ORDER BY event_id"
        )
        return [(r[0], r[1], r[2]) for r in rows if rule_id is None or r[3] == rule_id]

    async def notifications(self) -> list[dict[str, Any]]:
        rows = await self.rows("SELECT alert FROM alert_notifications ORDER BY notification_id")
        return [r[0] for r in rows]


@asynccontextmanager
async def evaluator(url: str, storage_mode: str, **context: Any) -> AsyncIterator[Evaluator]:
    """An evaluator on ``url`` with the test defaults (offline default interval 60 s)."""
    defaults = EvaluationContext(
        mode=mode_of(storage_mode), default_interval_s=60, api_url="http://api.test/", holder="test"
    )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await prepare(conn)
        yield Evaluator(conn, dataclasses.replace(defaults, **context))
