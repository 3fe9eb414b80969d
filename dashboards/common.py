"""Pieces the three dashboards share: settings, status constants and colours, panel styles.

Each function returns a fresh SDK builder (builders are mutable), which a dashboard goes on
to fill in.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataTransformerConfig,
    DynamicConfigValue,
    FieldColor,
    FieldColorModeId,
    ValueMap,
    ValueMapping,
    ValueMappingResult,
    VariableModel,
    VariableRefresh,
    VariableSort,
)

from dashboards.datasources import PG
from dashboards.sql import Sql, SqlFormat

__all__ = [
    "bar_chart",
    "fixed_color",
    "line_chart",
    "query_variable",
    "stat_panel",
    "status_constants",
    "status_mappings",
    "table_panel",
    "telemetry_dashboard",
    "unit_from_query",
    "unit_target",
]

#: The refId of a panel's unit query (see :func:`unit_target`).
UNIT_REF_ID = "unit"


def telemetry_dashboard(title: str, uid: str, description: str) -> dashboard.Dashboard:
    """Start a provisioned dashboard: read-only, in UTC, one crosshair across its panels."""
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["telemetry"])
        .readonly()
        .timezone("utc")
        .tooltip(DashboardCursorSync.CROSSHAIR)
    )


def status_constants() -> list[Builder[VariableModel]]:
    """Return the two numbers of the API's status rule, as hidden constants."""
    return [
        dashboard.ConstantVariable("default_interval_s")
        .value("60")
        .description(
            "Expected reporting interval (s) of devices that declare none: API_DEFAULT_INTERVAL_S"
        ),
        dashboard.ConstantVariable("offline_after")
        .value("3")
        .description(
            "A device is offline after this many expected intervals unheard: "
            "API_OFFLINE_AFTER_INTERVALS"
        ),
    ]


def query_variable(name: str, label: str, sql: str) -> dashboard.QueryVariable:
    """Start a variable whose options are the SQL's first column, sorted, refreshed on load."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(PG)
        .query(sql.strip())
        .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


def unit_target(sql: str) -> Sql:
    """Build a panel's second query: one row, one column ``unit`` (see :func:`unit_from_query`)."""
    return Sql(sql, SqlFormat.TABLE, ("unit",), ref_id=UNIT_REF_ID)


def unit_from_query() -> DataTransformerConfig:
    """Take the numbers' unit from the unit query ("Config from query results").

    The unit is the devices' own (a metric's unit in ``metric_units``), so the axis and the
    tooltip show it; Grafana shows a unit it does not know as a suffix.
    """
    return DataTransformerConfig(
        id_val="configFromData",
        options={
            "configRefId": UNIT_REF_ID,
            "mappings": [{"fieldName": "unit", "handlerKey": "unit"}],
            "applyTo": {"id": "byType", "options": "number"},
        },
    )


def status_mappings() -> list[ValueMapping]:
    """Map device status to words and colours: online green, offline red, never seen plain."""
    return [
        ValueMap(
            {
                "online": ValueMappingResult(text="online", color="green", index=0),
                "offline": ValueMappingResult(text="offline", color="red", index=1),
                "never_seen": ValueMappingResult(text="never seen", color="text", index=2),
            }
        )
    ]


def fixed_color(color: str) -> DynamicConfigValue:
    """Paint a field in one colour (an override property)."""
    return DynamicConfigValue("color", FieldColor(FieldColorModeId.FIXED, fixed_color=color))


def _legend() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def line_chart(*, fill_opacity: int = 0) -> timeseries.Panel:
    """Start a line chart that breaks where a value is missing, every series in its tooltip."""
    return (
        timeseries.Panel()
        .legend(_legend())
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.NONE)
        )
        .draw_style(common.GraphDrawStyle.LINE)
        .fill_opacity(fill_opacity)
        .insert_nulls(False)
        .line_width(1)
        .show_points(common.VisibilityMode.AUTO)
        .span_nulls(False)
    )


def bar_chart() -> timeseries.Panel:
    """Start a chart of stacked bars (counts per bucket), the largest first in the tooltip."""
    return (
        timeseries.Panel()
        .legend(_legend())
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .line_width(1)
        .stacking(common_builders.StackingConfig().group("A").mode(common.StackingMode.NORMAL))
    )


def stat_panel(*, fields: str = "") -> stat.Panel:
    """Start a stat panel of each field's last value with its name, without a sparkline."""
    return (
        stat.Panel()
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.AUTO)
        .reduce_options(
            common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields(fields).values(False)
        )
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
    )


def table_panel() -> table.Panel:
    """Start a plain table with small rows."""
    return table.Panel().cell_height(common.TableCellHeight.SM).show_header(True)
