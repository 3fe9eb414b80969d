"""Fleet overview: devices by status, readings per second, alerts, rejects, a map, a tag's metric.

The last panel shows one metric across the devices of a tag.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, geomap, piechart
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import geomap as geomap_models
from grafana_foundation_sdk.models import piechart as piechart_models
from grafana_foundation_sdk.models.dashboard import (
    DynamicConfigValue,
    FieldColorModeId,
    ValueMap,
    ValueMappingResult,
)

from dashboards import queries
from dashboards.common import (
    bar_chart,
    fixed_color,
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
from dashboards.sql import Sql, SqlFormat

__all__ = ["FLEET_OVERVIEW"]

_STATUS = (
    stat_panel()
    .id(1)
    .title("Devices by status")
    .description(
        "Registered devices, and how many are online (heard within offline_after expected "
        "intervals), offline, or never seen. Same rule as the API's device status."
    )
    .datasource(PG)
    .with_target(
        Sql(
            queries.FLEET_STATUS,
            SqlFormat.TABLE,
            ("devices", "online", "offline", "never seen"),
        )
    )
    .span(8)
    .height(5)
    .color_scheme(dashboard.FieldColor().mode(FieldColorModeId.FIXED).fixed_color("text"))
    .override_by_name("online", [fixed_color("green")])
    .override_by_name("offline", [fixed_color("red")])
)

_RATE = (
    line_chart(fill_opacity=10)
    .id(2)
    .title("Readings per second")
    .description(
        "Readings stored per second, fleet-wide, averaged over each bucket of at least a "
        "minute. Counted from the 1-minute rollup below 1 hour, from the 1-hour rollup above "
        "(on plain PostgreSQL the newest minute fills in at the next rollup refresh)."
    )
    .datasource(PG)
    .with_target(Sql(queries.READINGS_PER_SECOND, SqlFormat.TIME_SERIES, ("time", "readings/s")))
    .span(16)
    .height(5)
    .unit(units.RequestsPerSecond)
    .interval("1m")
)

_FIRING = (
    table_panel()
    .id(7)
    .title("Firing alerts")
    .description(
        "Alerts firing now (at most 200), critical first, then the most recent: the rule, "
        "the device, the value that made it fire, and whether someone acknowledged it. "
        "GET /v1/alerts has the same list; docs/alerts.md explains the rules."
    )
    .datasource(PG)
    .with_target(
        Sql(
            queries.FIRING_ALERTS,
            SqlFormat.TABLE,
            ("firing since", "severity", "rule", "device", "value", "acknowledged"),
        )
    )
    .span(24)
    .height(7)
    .mappings(
        [
            ValueMap(
                {
                    "critical": ValueMappingResult(color="red", index=0),
                    "warning": ValueMappingResult(color="orange", index=1),
                    "info": ValueMappingResult(color="blue", index=2),
                }
            )
        ]
    )
    .override_by_name(
        "severity", [DynamicConfigValue("custom.cellOptions", common.TableColorTextCellOptions())]
    )
    .override_by_name("firing since", [DynamicConfigValue("unit", units.DateTimeFromNow)])
)

_REJECT_REASONS = (
    piechart.Panel()
    .id(3)
    .title("Reject reasons in range")
    .description("Dead letters in the time range, by reason code.")
    .datasource(PG)
    .with_target(Sql(queries.REJECTS_BY_REASON, SqlFormat.TABLE, ("reason", "rejects")))
    .span(8)
    .height(8)
    .pie_type(piechart_models.PieChartType.PIE)
    .display_labels([piechart_models.PieChartLabels.NAME])
    .legend(
        piechart.PieChartLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.RIGHT)
        .show_legend(True)
        .values([piechart_models.PieChartLegendValues.VALUE])
    )
    .reduce_options(
        common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(True)
    )
    .tooltip(
        common_builders.VizTooltipOptions()
        .mode(common.TooltipDisplayMode.SINGLE)
        .sort(common.SortOrder.NONE)
    )
)

_REJECTS_OVER_TIME = (
    bar_chart()
    .id(4)
    .title("Rejects by reason")
    .description(
        "Dead letters per bucket, stacked by reason code: every invalid message or item "
        "lands in dead_letters with its reason."
    )
    .datasource(PG)
    .with_target(
        Sql(queries.REJECTS_OVER_TIME, SqlFormat.TIME_SERIES, ("time", "metric", "rejects"))
    )
    .span(16)
    .height(8)
    .unit(units.Short)
    .interval("1m")
)

_MARKERS = (
    common_builders.MapLayerOptions()
    .type("markers")
    .name("Devices")
    .location(
        common_builders.FrameGeometrySource()
        .mode(common.FrameGeometrySourceMode.COORDS)
        .latitude("latitude")
        .longitude("longitude")
    )
    .tooltip(True)
    # The SDK leaves a layer's own settings untyped; its dimension types fill them in.
    .config(
        {
            "showLegend": True,
            "style": {
                "color": common.ColorDimensionConfig(fixed="blue", field="status"),
                "opacity": 0.8,
                "size": common.ScaleDimensionConfig(min_val=2, max_val=15, fixed=6),
                "symbol": common.ResourceDimensionConfig(
                    common.ResourceDimensionMode.FIXED, fixed="img/icons/marker/circle.svg"
                ),
            },
        }
    )
)

_MAP = (
    geomap.Panel()
    .id(5)
    .title("Device locations")
    .description(
        "Each device's latest reported position: the newest values of its metrics "
        "'latitude' and 'longitude' (degrees, WGS 84), coloured by status."
    )
    .datasource(PG)
    .with_target(
        Sql(
            queries.FLEET_MAP,
            SqlFormat.TABLE,
            ("device_id", "status", "last_seen", "latitude", "longitude"),
        )
    )
    .span(14)
    .height(12)
    .mappings(status_mappings())
    .basemap(common_builders.MapLayerOptions().type("default").name("Basemap").config({}))
    .controls(
        geomap.ControlsOptions().mouse_wheel_zoom(True).show_attribution(True).show_zoom(True)
    )
    .layers([_MARKERS])
    .tooltip(geomap.TooltipOptions().mode(geomap_models.TooltipMode.DETAILS))
    .view(
        geomap.MapViewConfig()
        .id(geomap_models.MapCenterID.FIT)
        .all_layers(True)
        .lat(0)
        .lon(0)
        .zoom(2)
    )
)

_SILENT = (
    table_panel()
    .id(6)
    .title("Devices not online")
    .description(
        "Offline and never-seen devices (at most 200), most recently heard first, with the "
        "interval they are expected to report at."
    )
    .datasource(PG)
    .with_target(
        Sql(
            queries.SILENT_DEVICES,
            SqlFormat.TABLE,
            ("device_id", "name", "status", "last_seen", "expected_interval_s"),
        )
    )
    .span(10)
    .height(12)
    .mappings(status_mappings())
    .override_by_name(
        "status", [DynamicConfigValue("custom.cellOptions", common.TableColorTextCellOptions())]
    )
    .override_by_name("expected_interval_s", [DynamicConfigValue("unit", units.Seconds)])
)

_TAG = query_variable("tag", "Tag", queries.TAG_VARIABLE).description(
    "Devices whose metadata holds this key:value (all: every device)"
)
_GROUP_BY = query_variable("group_by", "Group by", queries.GROUP_BY_VARIABLE).description(
    "One series per value of this metadata key (none: one series)"
)
_FLEET_METRIC = query_variable("fleet_metric", "Metric", queries.FLEET_METRIC_VARIABLE)

_BY_TAG = (
    line_chart()
    .id(8)
    .title("$fleet_metric by $group_by ($tag)")
    .description(
        "The average of the metric across the devices of the tag, per bucket, one series per "
        "value of the group-by key: what GET /v1/aggregate answers. The 1-minute rollup "
        "below 1 hour, the 1-hour rollup above (minimum bucket 1 minute: a tag may select the "
        "whole fleet, whose raw readings are too many to read); the unit is the one the "
        "devices gave the metric."
    )
    .datasource(PG)
    .with_target(Sql(queries.FLEET_BY_TAG, SqlFormat.TIME_SERIES, ("time", "metric", "avg")))
    .with_target(unit_target(queries.FLEET_METRIC_UNIT))
    .with_transformation(unit_from_query())
    .axis_label("$fleet_metric")
    .span(24)
    .height(9)
    .interval("1m")
)

FLEET_OVERVIEW = (
    telemetry_dashboard(
        "Fleet overview",
        "telemetry-fleet-overview",
        "The whole fleet: who is reporting, how fast, what is firing, what is rejected, where.",
    )
    .time("now-6h", "now")
    .refresh("30s")
    .variables([*status_constants(), _TAG, _GROUP_BY, _FLEET_METRIC])
    .with_panel(_STATUS)
    .with_panel(_RATE)
    .with_panel(_FIRING)
    .with_panel(_REJECT_REASONS)
    .with_panel(_REJECTS_OVER_TIME)
    .with_panel(_MAP)
    .with_panel(_SILENT)
    .with_panel(_BY_TAG)
    .build()
)
