"""Device detail: one device's status, latest values, metrics over time, rejects, alerts."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import units
from grafana_foundation_sdk.models.dashboard import (
    DynamicConfigValue,
    VariableHide,
    VariableOption,
)

from dashboards import queries
from dashboards.common import (
    line_chart,
    query_variable,
    stat_panel,
    status_constants,
    status_mappings,
    table_panel,
    telemetry_dashboard,
    unit_from_query,
    unit_target,
)
from dashboards.datasources import PG
from dashboards.sql import Sql, SqlAnnotation, SqlFormat

__all__ = ["DEVICE_DETAIL"]


_DEVICE = query_variable("device", "Device", queries.DEVICE_VARIABLE)
_METRIC = (
    query_variable("metric", "Metrics", queries.METRIC_VARIABLE)
    .multi(True)
    .include_all(True)
    .current(VariableOption(selected=True, text=["All"], value=["$__all"]))
)
_RESOLUTION = query_variable("resolution", "Resolution", queries.RESOLUTION_VARIABLE).hide(
    VariableHide.HIDE_VARIABLE
)

_STATUS = (
    stat_panel(fields="/.*/")
    .id(1)
    .title("Status")
    .description(
        "Online, offline or never seen (the API's rule), when the device was last heard, "
        "how many sequence numbers went missing, and its expected reporting interval."
    )
    .datasource(PG)
    .with_target(
        Sql(
            queries.DEVICE_STATUS,
            SqlFormat.TABLE,
            ("status", "last seen", "sequence gaps", "expected interval"),
        )
    )
    .span(24)
    .height(4)
    .mappings(status_mappings())
    .override_by_name("last seen", [DynamicConfigValue("unit", units.DateTimeFromNow)])
    .override_by_name("expected interval", [DynamicConfigValue("unit", units.Seconds)])
)

_LATEST = (
    table_panel()
    .id(2)
    .title("Latest values")
    .description(
        "The newest stored value of each selected metric (numbers, true or false, text), its "
        "unit and when it was taken."
    )
    .datasource(PG)
    .with_target(
        Sql(queries.DEVICE_LATEST, SqlFormat.TABLE, ("metric", "value", "unit", "reading time"))
    )
    .span(10)
    .height(8)
)

_REJECTS = (
    table_panel()
    .id(3)
    .title("Rejected messages")
    .description("This device's dead letters in the time range (at most 200), newest first.")
    .datasource(PG)
    .with_target(
        Sql(
            queries.DEVICE_REJECTS,
            SqlFormat.TABLE,
            ("received_at", "source", "reason", "item_index", "detail"),
        )
    )
    .span(14)
    .height(8)
)

_SERIES = (
    line_chart()
    .id(4)
    .title("$metric")
    .description(
        "Average with the min-max band per bucket, one panel per selected metric. Raw "
        "readings below a 1-minute bucket, the 1-minute rollup below 1 hour, the 1-hour "
        "rollup above. Buckets are at least twice the device's expected interval; a bucket "
        "without a reading breaks the line."
    )
    .datasource(PG)
    .with_target(
        Sql(queries.DEVICE_METRIC_SERIES, SqlFormat.TIME_SERIES, ("time", "avg", "min", "max"))
    )
    .with_target(unit_target(queries.DEVICE_METRIC_UNIT))
    .with_transformation(unit_from_query())
    .axis_label("$metric")
    .span(12)
    .height(8)
    .override_by_name(
        "max",
        [
            DynamicConfigValue("custom.fillBelowTo", "min"),
            DynamicConfigValue("custom.fillOpacity", 15),
            DynamicConfigValue("custom.lineWidth", 0),
        ],
    )
    .override_by_name("min", [DynamicConfigValue("custom.lineWidth", 0)])
    .interval("$resolution")
    .repeat("metric")
    .repeat_direction("h")
    .max_per_row(2)
)

_NETWORK = (
    line_chart()
    .id(5)
    .title("Network throughput")
    .description(
        "Bytes per second of the agent's network counters (metrics ending in _rx_bytes or "
        "_tx_bytes), as agg=rate computes them: a counter that drops was reset (reboot), "
        "and counts from zero again. From raw readings, the 1-minute or the 1-hour rollup "
        "by bucket width, as the metric panels."
    )
    .datasource(PG)
    .with_target(
        Sql(queries.DEVICE_NETWORK_RATE, SqlFormat.TIME_SERIES, ("time", "metric", "rate"))
    )
    .unit(units.BytesPerSecondSI)
    .span(24)
    .height(8)
    .interval("$resolution")
)

# Every panel with a time axis marks the device's alert transitions, acknowledgements and
# silences (alert_events), tagged with the rule's severity and the event.
_ALERT_EVENTS = (
    dashboard.AnnotationQuery()
    .name("Alert events")
    .datasource(PG)
    .enable(True)
    .icon_color("red")
    .target(SqlAnnotation(queries.DEVICE_ALERT_EVENTS, ("time", "text", "tags")))
)

DEVICE_DETAIL = (
    telemetry_dashboard(
        "Device detail",
        "telemetry-device-detail",
        "One device: status, latest values, metrics over time, rejects and alert events.",
    )
    .time("now-24h", "now")
    .refresh("30s")
    .variables([*status_constants(), _DEVICE, _METRIC, _RESOLUTION])
    .annotation(_ALERT_EVENTS)
    .with_panel(_STATUS)
    .with_panel(_LATEST)
    .with_panel(_REJECTS)
    .with_panel(_NETWORK)
    .with_panel(_SERIES)
    .build()
)
