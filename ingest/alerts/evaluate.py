"""One evaluation of every alert rule, in one transaction with what it writes.

The states, their history (``alert_events``) and the notifications to send (the outbox,
``alert_notifications``) change together or not at all: an evaluator that dies mid-way
leaves the previous evaluation's world, and the next evaluation makes the same decisions
again. Nothing is sent here; :mod:`ingest.alerts.delivery` sends what the outbox holds.

``now`` is a parameter, not the clock: the service passes the wall clock, tests pass the
times their data was written for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg.sql import SQL, Identifier

from ingest.alerts import eval_statements as sql
from ingest.errors import MigrationError
from ingest.migrate import ResolvedMode

__all__ = ["Evaluation", "EvaluationContext", "evaluate", "prepare"]


@dataclass(frozen=True, slots=True)
class EvaluationContext:
    """What an evaluation needs besides the time: the storage path and the settings."""

    mode: ResolvedMode
    default_interval_s: int
    api_url: str
    holder: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What one evaluation found and wrote."""

    observed: int
    transitions: int
    notifications: int
    seconds: float


async def prepare(conn: AsyncConnection[TupleRow]) -> None:
    """Create the evaluation's temporary tables on ``conn`` (once per connection)."""
    await conn.execute(sql.CREATE_TEMP_TABLES)
    await conn.execute("SELECT set_config('TimeZone', 'UTC', false)")


def _minute_floor(t: datetime) -> datetime:
    return datetime.fromtimestamp(t.timestamp() // 60 * 60, UTC)


async def _rollup_source(
    conn: AsyncConnection[TupleRow], mode: ResolvedMode
) -> tuple[Identifier, datetime]:
    """Return the 1-minute rollup's table and the time before which it is complete."""
    if mode == "timescale":
        row = await (await conn.execute(sql.CAGG_SOURCE)).fetchone()
        if row is None:
            raise MigrationError("the continuous aggregate readings_1m is missing: run migrate")
        return Identifier(row[0], row[1]), row[2]
    row = await (await conn.execute(sql.ROLLUP_WATERMARK)).fetchone()
    return Identifier("readings_1m"), datetime.max.replace(tzinfo=UTC) if row is None else row[0]


async def evaluate(
    conn: AsyncConnection[TupleRow], now: datetime, context: EvaluationContext
) -> Evaluation:
    """Evaluate every live rule at ``now`` and commit the changes; ``conn`` is prepared."""
    started = time.perf_counter()
    async with conn.transaction():
        rollup, rollup_until = await _rollup_source(conn, context.mode)
        longest = await (await conn.execute(sql.LONGEST_WINDOW)).fetchone()
        if context.mode == "timescale":
            await conn.execute(sql.NO_RUNTIME_EXCLUSION)
        params = {
            "now": now,
            "since": now - timedelta(seconds=longest[0] if longest else 0),
            "rollup_until": min(_minute_floor(now), rollup_until),
            "default_interval_s": context.default_interval_s,
            "api_url": context.api_url.rstrip("/"),
        }
        await conn.execute(SQL(sql.AGGREGATE_WINDOWS).format(rollup=rollup), params)
        observed = 0
        for statement in (sql.OBSERVE_THRESHOLD, sql.OBSERVE_NO_DATA, sql.OBSERVE_OFFLINE):
            observed += (await conn.execute(statement, params)).rowcount
        changes = (await conn.execute(sql.DECIDE, params)).rowcount
        transitions = notifications = 0
        if changes:
            await conn.execute(sql.APPLY_STATES)
            transitions = (await conn.execute(sql.INSERT_EVENTS, params)).rowcount
            notifications = (await conn.execute(sql.INSERT_NOTIFICATIONS, params)).rowcount
        await conn.execute(
            sql.RECORD_EVALUATOR,
            {"holder": context.holder, "now": now, "duration_s": time.perf_counter() - started},
        )
    return Evaluation(observed, transitions, notifications, time.perf_counter() - started)
