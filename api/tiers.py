"""Which storage tier serves a bucketed range once retention has thinned the finer ones.

A width is served from its own tier (see :mod:`api.buckets`) while that tier still holds
the start of the range. Rollups may outlive raw readings (``RETENTION_RAW_DAYS`` and the
rollups' own settings, recorded by ``migrate`` in ``storage_settings``): a range reaching
further back is served by the finest tier that still holds its start, and its buckets
widen to a whole number of that tier's rows (``bucket`` and ``source`` in the answer say
so). Past every horizon, the coarsest tier serves what it has. A range too short to hold
one whole row of the chosen tier is read from raw rows, which may be gone: ask for a range
of whole rows.
"""

from __future__ import annotations

from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from api import buckets, queries
from core.retention import TIERS, Retention, Tier

__all__ = ["plan_within_retention", "retention"]

_STEP_S: dict[Tier, int] = {"raw": 1, "1m": 60, "1h": 3600, "1d": 86400}


async def retention(conn: AsyncConnection[TupleRow]) -> Retention | None:
    """Return the retention per tier that ``migrate`` recorded; None before it did."""
    cur = await conn.execute(queries.RETENTION_SETTINGS)
    return Retention.from_settings(dict(await cur.fetchall()))


def _natural_tier(seconds: int) -> Tier:
    return next(t for t in reversed(TIERS) if seconds % _STEP_S[t] == 0)


def plan_within_retention(
    start: datetime,
    end: datetime,
    seconds: int,
    *,
    complete_before: datetime | None,
    kept: Retention | None,
    now: datetime,
) -> tuple[int, buckets.Plan]:
    """Return the bucket width to answer with and where its buckets come from."""
    tiers = TIERS[TIERS.index(_natural_tier(seconds)) :]
    chosen = next(
        (t for t in tiers if kept is None or start >= kept.horizon(t, now)),
        tiers[-1],
    )
    step = _STEP_S[chosen]
    width = -(-seconds // step) * step
    return width, buckets.plan(start, end, width, complete_before)
