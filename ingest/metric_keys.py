"""The metric dictionary: each metric name's smallint key, created on first use and cached.

A metric created here gets the type of the values it is written with (numbers unless
``kinds`` says otherwise); the intake has normally created it already (:mod:`ingest.catalog`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from ingest import statements

__all__ = ["MetricKeys"]


class MetricKeys:
    """Names to keys, as the ``metrics`` table has them; a name once known never changes key."""

    def __init__(self) -> None:
        self._keys: dict[str, int] = {}
        self._lock = asyncio.Lock()

    @property
    def known(self) -> Mapping[str, int]:
        """Every name resolved so far."""
        return self._keys

    async def resolve(
        self,
        conn: AsyncConnection[TupleRow],
        names: Iterable[str],
        kinds: Mapping[str, str] | None = None,
    ) -> Mapping[str, int]:
        """Make sure every one of ``names`` has a key (creating what is missing); return all.

        ``kinds``: the value type of names that do not hold numbers.
        """
        keys = self._keys
        missing = sorted({name for name in names if name not in keys})
        if missing:
            types = [(kinds or {}).get(name, "number") for name in missing]
            async with self._lock, conn.transaction():
                # Another worker may create the same names now; ON CONFLICT makes that safe
                # and the SELECT then returns whichever key won.
                await conn.execute(statements.CREATE_METRICS, [missing, types])
                cur = await conn.execute(statements.KNOWN_METRICS, [missing])
                keys.update(dict(await cur.fetchall()))
        return keys
