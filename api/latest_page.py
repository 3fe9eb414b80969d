"""The fleet-wide latest values, written as JSON by PostgreSQL in slices read side by side.

Writing the JSON of 10,000 devices costs PostgreSQL about 120 ms of one core. A large page
is therefore cut into slices of devices that run at once on spare pooled connections, all
reading one snapshot (exported by the first, as ``pg_dump --jobs`` does), so the page is
exactly what a single query would have returned. Without a spare connection the slices
run one after another on the first.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import LiteralString

from psycopg import AsyncConnection, sql
from psycopg.rows import TupleRow

from api import queries
from api.database import Database

__all__ = ["SLICE_DEVICES", "Page", "read_page"]

#: Devices per slice; a page of at most this many is one query.
SLICE_DEVICES = 2_500
#: Connections one page uses at most, its own included.
_MAX_CONNECTIONS = 4


@dataclass(frozen=True, slots=True)
class Page:
    """A page of devices as a JSON array; when more follow, the last device id on it."""

    devices_json: str
    next_after: str | None


@dataclass(frozen=True, slots=True)
class _Slice:
    after: str
    limit: int


async def read_page(
    db: Database,
    conn: AsyncConnection[TupleRow],
    *,
    after: str,
    limit: int,
    metric_keys: list[int] | None,
    window: timedelta,
) -> Page:
    """Read the page of ``limit`` devices after ``after``.

    ``conn`` must be inside a repeatable-read transaction that has not read yet (see
    ``queries.BEGIN_SNAPSHOT``), so that its snapshot is the page's.
    """
    params = {"metric_keys": metric_keys, "window": window}
    slices = [_Slice(after, limit)]
    if limit > SLICE_DEVICES:
        cur = await conn.execute(
            queries.FLEET_SLICE_ENDS, {"after": after, "limit": limit, "slice": SLICE_DEVICES}
        )
        ends = [str(row[0]) for row in await cur.fetchall()]
        slices = [
            _Slice(start, SLICE_DEVICES if i < len(ends) else limit - SLICE_DEVICES * len(ends))
            for i, start in enumerate([after, *ends])
        ]
    pending = deque(enumerate(slices))
    results: dict[int, Page] = {}

    async def work(worker: AsyncConnection[TupleRow]) -> None:
        # The query writes times in their ISO text form. And the planner's cost for a full
        # page passes jit_above_cost, while compiling the plan takes longer (40 ms) than it
        # saves.
        await worker.execute("SET LOCAL DateStyle = 'ISO'; SET LOCAL jit = off")
        while pending:
            index, part = pending.popleft()
            results[index] = await _read_slice(worker, part, params)

    if len(slices) == 1:
        await work(conn)
        return results[0]
    snapshot = await _one(conn, queries.EXPORT_SNAPSHOT)

    async def on_spare() -> None:
        # The page's own connection starts at once; spares join as they are lent.
        async with db.spare_connection() as spare:
            if spare is None or not pending:
                return
            async with spare.transaction():
                await spare.execute(queries.BEGIN_SNAPSHOT)
                await spare.execute(
                    sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot))
                )
                await work(spare)

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(work(conn))
            for _ in range(min(len(slices), _MAX_CONNECTIONS) - 1):
                group.create_task(on_spare())
    except ExceptionGroup as failed:
        # As one query would have failed; the other slices were cancelled.
        raise failed.exceptions[0] from failed
    # Every slice holds devices: the ends above are only those that devices follow.
    arrays = [results[i].devices_json[1:-1] for i in range(len(slices))]
    return Page("[" + ",".join(arrays) + "]", results[len(slices) - 1].next_after)


async def _read_slice(
    conn: AsyncConnection[TupleRow], part: _Slice, params: Mapping[str, object]
) -> Page:
    cur = await conn.execute(
        queries.FLEET_LATEST_JSON, {**params, "after": part.after, "limit": part.limit}
    )
    # An aggregate without GROUP BY: always one row.
    devices, more, last = await cur.fetchone() or ("[]", False, None)
    return Page(devices, str(last) if more else None)


async def _one(conn: AsyncConnection[TupleRow], query: LiteralString) -> str:
    row = await (await conn.execute(query)).fetchone()
    assert row is not None
    return str(row[0])
