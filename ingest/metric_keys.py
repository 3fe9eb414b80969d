"""The metric dictionary: each metric name's smallint key, created on first use and cached.

Keys are ``smallint``: at most :data:`MAX_METRICS` names are ever given one (the identity's
last value; a key lost to a race between writers is not handed out again). Once the
database refuses a new key, the dictionary is :attr:`~MetricKeys.full` in this process: the
accept step then rejects items with new names as ``too_many_metrics``, and the batch that
found out fails with :class:`~ingest.errors.MetricLimitError` (a push back: its senders
resend, and the new names are then refused item by item) instead of a database error.

A metric created here gets the type of the values it is written with (numbers unless
``kinds`` says otherwise); the intake has normally created it already (:mod:`ingest.catalog`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from psycopg import AsyncConnection, errors
from psycopg.rows import TupleRow

from ingest import statements
from ingest.errors import MetricLimitError

__all__ = ["MAX_METRICS", "MetricKeys"]

#: The most metric names the dictionary can hold (the largest ``smallint``).
MAX_METRICS = 32_767


class MetricKeys:
    """Names to keys, as the ``metrics`` table has them; a name once known never changes key."""

    def __init__(self) -> None:
        self._keys: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._full = False

    @property
    def full(self) -> bool:
        """Whether the database has refused a new key: new names are then refused."""
        return self._full

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
        missing = {name for name in names if name not in keys}
        if missing:
            ordered = sorted(missing)
            types = [(kinds or {}).get(name, "number") for name in ordered]
            async with self._lock, conn.transaction():
                # Another worker may create the same names now; ON CONFLICT makes that safe
                # and the SELECT then returns whichever key won.
                try:
                    async with conn.transaction():
                        await conn.execute(statements.CREATE_METRICS, [ordered, types])
                except errors.SequenceGeneratorLimitExceeded:
                    self._full = True
                cur = await conn.execute(statements.KNOWN_METRICS, [sorted(missing)])
                keys.update(dict(await cur.fetchall()))
            unkeyed = missing.difference(keys)
            if unkeyed:
                raise MetricLimitError(
                    f"the metric dictionary is full ({MAX_METRICS} names): "
                    f"{len(unkeyed)} new names refused; resend, they are then rejected"
                )
        return keys
