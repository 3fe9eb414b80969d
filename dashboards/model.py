"""A small typed model of Grafana dashboards, rendered to the JSON that Grafana 11 and 12 load.

Only what the telemetry dashboards use is modelled: SQL and PromQL targets, a handful of
panel types laid out in rows on Grafana's 24-column grid, and query and constant variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "PG",
    "PROM",
    "SCHEMA_VERSION",
    "Constant",
    "Dashboard",
    "JsonObject",
    "Panel",
    "PromQL",
    "QueryVariable",
    "Sql",
    "Target",
    "Variable",
]

JsonObject = dict[str, Any]

#: Grafana 11.0's dashboard schema; Grafana 11.x and 12 load it (and migrate it in memory).
SCHEMA_VERSION = 39
GRID_COLUMNS = 24

#: The provisioned datasources (dashboards/provisioning/datasources/telemetry.yaml).
PG: JsonObject = {"type": "grafana-postgresql-datasource", "uid": "telemetry-pg"}
PROM: JsonObject = {"type": "prometheus", "uid": "telemetry-prom"}


@dataclass(frozen=True)
class Sql:
    """A PostgreSQL target: raw SQL with Grafana macros, and the columns it must return."""

    raw_sql: str
    format: Literal["time_series", "table"]
    columns: tuple[str, ...]

    def to_json(self, ref_id: str) -> JsonObject:
        """Render the target as Grafana stores it (code mode, raw SQL)."""
        return {
            "datasource": PG,
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.raw_sql.strip(),
            "refId": ref_id,
        }


@dataclass(frozen=True)
class PromQL:
    """A Prometheus target: an expression and the legend of its series."""

    expr: str
    legend: str

    def to_json(self, ref_id: str) -> JsonObject:
        """Render the target as Grafana stores it (code mode, range query)."""
        return {
            "datasource": PROM,
            "editorMode": "code",
            "expr": self.expr,
            "legendFormat": self.legend,
            "range": True,
            "refId": ref_id,
        }


Target = Sql | PromQL

PanelType = Literal["timeseries", "stat", "table", "piechart", "geomap", "bargauge"]


@dataclass(frozen=True)
class Panel:
    """A panel: what it shows, its targets, its size on the grid and its options."""

    title: str
    type: PanelType
    description: str
    targets: tuple[Target, ...]
    width: int
    height: int
    unit: str | None = None
    options: JsonObject = field(default_factory=dict)
    custom: JsonObject = field(default_factory=dict)
    defaults: JsonObject = field(default_factory=dict)
    overrides: tuple[JsonObject, ...] = ()
    #: Grafana's "Min interval": the lower bound of $__interval for this panel.
    min_interval: str | None = None
    #: Repeat the panel for each selected value of this variable.
    repeat: str | None = None

    @property
    def datasource(self) -> JsonObject:
        """The panel's datasource: that of its targets (a panel never mixes them)."""
        kinds = {type(t) for t in self.targets}
        if len(kinds) != 1:
            raise ValueError(f"panel {self.title!r} mixes SQL and PromQL targets")
        return PG if kinds == {Sql} else PROM

    def to_json(self, panel_id: int, x: int, y: int) -> JsonObject:
        """Render the panel with its id and position."""
        defaults: JsonObject = dict(self.defaults)
        if self.unit is not None:
            defaults["unit"] = self.unit
        if self.custom:
            defaults["custom"] = self.custom
        panel: JsonObject = {
            "datasource": self.datasource,
            "description": self.description,
            "fieldConfig": {"defaults": defaults, "overrides": list(self.overrides)},
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "id": panel_id,
            "options": self.options,
            "targets": [t.to_json(chr(ord("A") + i)) for i, t in enumerate(self.targets)],
            "title": self.title,
            "type": self.type,
        }
        if self.min_interval is not None:
            panel["interval"] = self.min_interval
        if self.repeat is not None:
            panel |= {"repeat": self.repeat, "repeatDirection": "h", "maxPerRow": 2}
        return panel


@dataclass(frozen=True)
class QueryVariable:
    """A variable whose options come from a SQL query (first column, or __text/__value)."""

    name: str
    label: str
    sql: str
    multi: bool = False
    include_all: bool = False
    hidden: bool = False

    def to_json(self) -> JsonObject:
        """Render the variable, refreshed whenever the dashboard loads (All selected first)."""
        current: JsonObject = {}
        if self.include_all:
            current = {"selected": True, "text": ["All"], "value": ["$__all"]}
        return {
            "current": current,
            "datasource": PG,
            "definition": self.sql.strip(),
            "hide": 2 if self.hidden else 0,
            "includeAll": self.include_all,
            "label": self.label,
            "multi": self.multi,
            "name": self.name,
            "options": [],
            "query": self.sql.strip(),
            "refresh": 1,
            "regex": "",
            "skipUrlSync": False,
            "sort": 1,
            "type": "query",
        }


@dataclass(frozen=True)
class Constant:
    """A hidden constant: a setting the operator edits in one place (dashboard settings)."""

    name: str
    value: str
    description: str

    def to_json(self) -> JsonObject:
        """Render the constant with its only option selected."""
        option = {"selected": True, "text": self.value, "value": self.value}
        return {
            "current": {"text": self.value, "value": self.value},
            "description": self.description,
            "hide": 2,
            "label": self.name,
            "name": self.name,
            "options": [option],
            "query": self.value,
            "skipUrlSync": True,
            "type": "constant",
        }


Variable = QueryVariable | Constant


@dataclass(frozen=True)
class Dashboard:
    """A dashboard: a stable uid, its variables and its panels in rows, top to bottom."""

    uid: str
    title: str
    description: str
    rows: tuple[tuple[Panel, ...], ...]
    variables: tuple[Variable, ...] = ()
    time_from: str = "now-6h"
    refresh: str = "30s"
    tags: tuple[str, ...] = ("telemetry",)

    @property
    def panels(self) -> tuple[Panel, ...]:
        """Every panel, in layout order."""
        return tuple(p for row in self.rows for p in row)

    @property
    def filename(self) -> str:
        """The JSON file name: the uid without its ``telemetry-`` prefix."""
        return self.uid.removeprefix("telemetry-") + ".json"

    def to_json(self) -> JsonObject:
        """Render the dashboard model; panel ids count up in layout order from 1."""
        panels: list[JsonObject] = []
        y = 0
        for row in self.rows:
            x = 0
            for panel in row:
                if x + panel.width > GRID_COLUMNS:
                    raise ValueError(f"{self.uid}: row with {panel.title!r} is over 24 wide")
                panels.append(panel.to_json(len(panels) + 1, x, y))
                x += panel.width
            y += max(p.height for p in row)
        return {
            "annotations": {"list": []},
            "description": self.description,
            "editable": False,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "links": [],
            "panels": panels,
            "refresh": self.refresh,
            "schemaVersion": SCHEMA_VERSION,
            "tags": list(self.tags),
            "templating": {"list": [v.to_json() for v in self.variables]},
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "timezone": "utc",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
            "weekStart": "",
        }
