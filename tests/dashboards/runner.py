"""Panel SQL run as Grafana runs it: macros and variables expanded, as a read-only role.

The dashboard tests load data on each storage path and hand a connection to
:func:`check_dashboard`, which runs every SQL target of every panel (and every SQL
annotation) at intervals that pick each source and checks the columns each one returns.
The scale benchmark times the Fleet overview's panels with the same :class:`Grafana`.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import psycopg
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel, VariableType
from psycopg import sql as pgsql
from psycopg.rows import TupleRow

from dashboards.common import UNIT_REF_ID
from dashboards.sql import SqlAnnotationTarget, SqlFormat, SqlQuery
from tests.dashboards.grafana import TimeRange, VariableValue, expand, parse_interval
from tests.ingest.helpers import T0

__all__ = [
    "INTERVALS",
    "RANGE",
    "Grafana",
    "Rows",
    "check_dashboard",
    "panels",
    "read_only",
    "run_sql",
]

RANGE = TimeRange(T0 - timedelta(hours=1), T0 + timedelta(hours=4))
# One interval per source: raw readings, the 1-minute rollup, the 1-hour rollup.
INTERVALS = (timedelta(seconds=10), timedelta(minutes=5), timedelta(hours=2))

# PostgreSQL type OIDs.
TIMESTAMPTZ, TEXT, NUMERIC = 1184, 25, 1700
NUMBERS = {20, 21, 23, 700, 701, NUMERIC}

Rows = list[tuple[Any, ...]]


def panels(dashboard: Dashboard) -> list[Panel]:
    """The dashboard's panels (rows and library panels left out)."""
    return [p for p in dashboard.panels or [] if isinstance(p, Panel)]


async def run_sql(
    conn: psycopg.AsyncConnection[TupleRow], sql: str
) -> tuple[list[str], list[int], Rows]:
    """Run expanded SQL as Grafana sends it (simple protocol); column names, type OIDs, rows."""
    cur = await conn.execute(sql.encode())
    assert cur.description is not None
    names = [c.name for c in cur.description]
    types = [c.type_code for c in cur.description]
    return names, types, list(await cur.fetchall())


class Grafana:
    """Runs a dashboard's queries as Grafana would, with variables resolved from the data."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection[TupleRow],
        timescaledb: bool,
        time_range: TimeRange = RANGE,
    ) -> None:
        self.conn = conn
        self.timescaledb = timescaledb
        self.time_range = time_range
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


def check_columns(
    panel: Panel, target: SqlQuery, names: list[str], types: list[int], rows: Rows
) -> None:
    where = f"{panel.title!r}"
    assert tuple(names) == target.columns, f"{where} returns {names}"
    assert rows, f"{where} returned no rows"
    typed = dict(zip(names, types, strict=True))
    if target.format == SqlFormat.TIME_SERIES:
        assert names[0] == "time"
        assert typed["time"] in {TIMESTAMPTZ, NUMERIC, 701}
        for name in names[1:]:
            assert typed[name] == TEXT if name == "metric" else typed[name] in NUMBERS, name
    if panel.type_val == "geomap":
        assert typed["latitude"] in NUMBERS
        assert typed["longitude"] in NUMBERS


def check_references(panel: Panel, names: set[str]) -> None:
    """The fields a panel configures are among those its queries return."""
    where = f"{panel.title!r}"
    saved = json.loads(json.dumps(panel, cls=JSONEncoder))
    overrides = saved.get("fieldConfig", {}).get("overrides", [])
    referenced = {o["matcher"]["options"] for o in overrides if o["matcher"]["id"] == "byName"}
    for layer in saved.get("options", {}).get("layers", []):
        referenced |= {layer["location"]["latitude"], layer["location"]["longitude"]}
        referenced.add(layer["config"]["style"]["color"]["field"])
    assert referenced <= names, f"{where} configures fields it does not get: {referenced}"


async def check_dashboard(
    grafana: Grafana, dashboard: Dashboard, choose: dict[str, str]
) -> dict[tuple[str, timedelta] | tuple[str, timedelta, str], Rows]:
    """Run every SQL target at every interval; return rows by (panel title, interval).

    SQL annotations run once (Grafana gives them no interval); their rows are under
    (annotation name, zero). A panel's unit query's rows are under (title, interval,
    "unit").
    """
    await grafana.resolve(dashboard, choose)
    results: dict[tuple[str, timedelta] | tuple[str, timedelta, str], Rows] = {}
    for annotation in dashboard.annotations.list_val or []:
        if not isinstance(annotation.target, SqlAnnotationTarget):
            continue
        query = annotation.target.query
        sql = grafana.expand(query.raw_sql, INTERVALS[0], grafana.values)
        names, types, rows = await run_sql(grafana.conn, sql)
        where = f"annotation {annotation.name!r}"
        assert tuple(names) == query.columns, f"{where} returns {names}"
        assert rows, f"{where} returned no rows"
        assert types[0] == TIMESTAMPTZ, f"{where}: time is not a timestamp"
        assert set(types[1:]) == {TEXT}, f"{where}: text and tags are not text"
        results[annotation.name, timedelta(0)] = rows
    for panel in panels(dashboard):
        assert panel.title is not None
        returned: set[str] = set()
        for target in panel.targets or []:
            if not isinstance(target, SqlQuery):
                continue
            for requested in INTERVALS:
                for values in grafana.scopes(panel):
                    interval = grafana.interval(panel, requested, values)
                    sql = grafana.expand(target.raw_sql, interval, values)
                    names, types, rows = await run_sql(grafana.conn, sql)
                    check_columns(panel, target, names, types, rows)
                    returned |= set(names)
                    key = (panel.title, requested)
                    results[(*key, "unit") if target.ref_id == UNIT_REF_ID else key] = rows
        if returned:
            check_references(panel, returned)
    return results


@asynccontextmanager
async def read_only(conn: psycopg.AsyncConnection[TupleRow]) -> AsyncIterator[None]:
    """Act as Grafana's role does: SELECT on the tables (and views) of the schema, no more."""
    role = pgsql.Identifier(f"grafana_ro_{os.getpid()}")
    await conn.execute(pgsql.SQL("CREATE ROLE {} NOLOGIN").format(role))
    try:
        await conn.execute(
            pgsql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(role)
        )
        await conn.execute(pgsql.SQL("SET ROLE {}").format(role))
        yield
    finally:
        await conn.execute("RESET ROLE")
        await conn.execute(pgsql.SQL("DROP OWNED BY {}").format(role))
        await conn.execute(pgsql.SQL("DROP ROLE {}").format(role))
