"""Run a dashboard's SQL as Grafana would: variables resolved from the data, macros expanded.

Used by the dashboard tests (every query on both storage paths) and by the scale benchmark
(the Fleet overview's panel SQL at 100,000 devices).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel, VariableType
from psycopg.rows import TupleRow

from tests.dashboards.grafana import TimeRange, VariableValue, expand, parse_interval

__all__ = ["GrafanaRunner", "Rows", "panels", "run_sql"]

Rows = list[tuple[Any, ...]]


def panels(dashboard: Dashboard) -> list[Panel]:
    """The dashboard's panels (rows and library panels left out)."""
    return [p for p in dashboard.panels or [] if isinstance(p, Panel)]


async def run_sql(
    conn: psycopg.AsyncConnection[TupleRow], sql: str
) -> tuple[list[str], list[int], Rows]:
    """Run expanded SQL as Grafana sends it (simple protocol); column names, type OIDs, rows."""
    cur = await conn.execute(sql.encode())
    if cur.description is None:
        raise AssertionError(f"not a query: {sql[:80]}")
    names = [c.name for c in cur.description]
    types = [c.type_code for c in cur.description]
    return names, types, list(await cur.fetchall())


class GrafanaRunner:
    """Runs a dashboard's queries over ``time_range``, as Grafana would on load."""

    def __init__(
        self, conn: psycopg.AsyncConnection[TupleRow], time_range: TimeRange, *, timescaledb: bool
    ) -> None:
        self.conn = conn
        self.time_range = time_range
        self.timescaledb = timescaledb
        self.values: dict[str, VariableValue] = {}

    def expand(self, sql: str, interval: timedelta, values: dict[str, VariableValue]) -> str:
        """``sql`` with these variable values and ``$__interval``, as Grafana sends it."""
        return expand(sql, values, self.time_range, interval, timescaledb=self.timescaledb)

    async def resolve(self, dashboard: Dashboard, choose: dict[str, str]) -> None:
        """Set each variable as Grafana would on load: constants, then query results."""
        for var in dashboard.templating.list_val or []:
            assert isinstance(var.query, str)
            if var.type_val == VariableType.CONSTANT:
                self.values[var.name] = VariableValue(var.query)
                continue
            assert var.type_val == VariableType.QUERY
            sql = self.expand(var.query, timedelta(minutes=1), self.values)
            names, _, rows = await run_sql(self.conn, sql)
            assert len(names) == 1, f"variable {var.name} returns {names}"
            options = tuple(str(r[0]) for r in rows)
            assert options, f"variable {var.name} has no options"
            if var.multi:
                self.values[var.name] = VariableValue(options, multi=True)
            else:
                value = choose.get(var.name, options[0])
                assert value in options
                self.values[var.name] = VariableValue(value)

    def scopes(self, panel: Panel) -> list[dict[str, VariableValue]]:
        """The variable values of the panel, once per repeated copy."""
        if panel.repeat is None:
            return [self.values]
        chosen = self.values[panel.repeat].value
        assert isinstance(chosen, tuple)
        return [self.values | {panel.repeat: VariableValue(v, multi=True)} for v in chosen]

    def interval(
        self, panel: Panel, requested: timedelta, values: dict[str, VariableValue]
    ) -> timedelta:
        """$__interval: the requested one, but never below the panel's min interval."""
        if panel.interval is None:
            return requested
        low = expand(panel.interval, values, self.time_range, requested)
        return max(requested, parse_interval(low))
