"""What the first readings fixed: each metric's type, and each device's unit of a metric.

A metric's type (number, boolean or string) is fixed by its first reading, and a device's
unit of a metric by the first reading of it that carries a unit; neither changes after.
The intake asks :class:`Catalog` synchronously for what it has cached and calls
:meth:`Catalog.learn` for what it has not seen yet, which inserts the readings' own type
and unit where nothing is stored and reads back what is: when two workers see a new metric
at once, both learn the type of whichever insert won. Lookups run on a connection lent by
the writer, so a database failure arrives as :class:`~ingest.errors.StorageError`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from psycopg import errors

from ingest import statements
from ingest.devices import Lender

__all__ = ["Catalog", "ValueType", "value_type"]


class ValueType(enum.StrEnum):
    """The type of a metric's values (``metrics.value_type``)."""

    NUMBER = "number"
    BOOLEAN = "boolean"
    STRING = "string"


def value_type(value: float | bool | str) -> ValueType:
    """Return the type of one reading's value."""
    if isinstance(value, bool):
        return ValueType.BOOLEAN
    return ValueType.STRING if isinstance(value, str) else ValueType.NUMBER


_UnitKey = tuple[int, str]  # (device_key, metric name)


class Catalog:
    """Metric types and device units, as the database holds them, behind a bounded cache."""

    def __init__(self, lend: Lender, *, max_units: int = 200_000) -> None:
        self._lend = lend
        self.max_units = max_units
        self._types: dict[str, ValueType] = {}
        #: The metrics known to hold numbers: one set check covers a numeric reading-set.
        self.numbers: set[str] = set()
        self._units: dict[_UnitKey, str] = {}

    def type_of(self, metric: str) -> ValueType | None:
        """Return the type of ``metric``, or None where it is not cached (or not stored)."""
        return self._types.get(metric)

    def unit_of(self, device_key: int, metric: str) -> str | None:
        """Return the unit of ``metric`` for the device, or None where it is not cached."""
        return self._units.get((device_key, metric))

    async def learn(self, types: Mapping[str, ValueType], units: Mapping[_UnitKey, str]) -> None:
        """Fix the ``types`` and ``units`` not fixed yet; cache what the database holds.

        ``types`` and ``units`` are what the readings at hand would fix: the first of each
        in the order received. Afterwards :meth:`type_of` and :meth:`unit_of` answer for
        every key given, but for new metrics when the dictionary is full (no type: the
        intake refuses them as ``too_many_metrics``).
        """
        metrics = sorted(types)
        unit_keys = sorted(units)
        unit_rows: list[tuple[int, str, str]] = []
        async with self._lend() as conn, conn.transaction():
            if metrics:
                try:
                    async with conn.transaction():
                        await conn.execute(
                            statements.CREATE_METRICS, [metrics, [types[m] for m in metrics]]
                        )
                except errors.SequenceGeneratorLimitExceeded:
                    pass  # the dictionary is full: names left without a type are refused
                cur = await conn.execute(statements.METRIC_TYPES, [metrics])
                for name, kind in await cur.fetchall():
                    self._types[name] = ValueType(kind)
                    if kind == ValueType.NUMBER:
                        self.numbers.add(name)
            if unit_keys:
                keys = [[key for key, _ in unit_keys], [metric for _, metric in unit_keys]]
                await conn.execute(
                    statements.CREATE_UNITS, [*keys, [units[key] for key in unit_keys]]
                )
                unit_rows = await (await conn.execute(statements.KNOWN_UNITS, keys)).fetchall()
        if len(self._units) + len(unit_rows) > self.max_units:
            self._units.clear()  # crude, but bounded; a full cache only costs re-queries
        for device_key, metric, unit in unit_rows:
            self._units[device_key, metric] = unit
