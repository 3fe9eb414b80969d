"""Fleet overview: devices by status, readings per second, reject reasons, a map."""

from __future__ import annotations

from dashboards import queries
from dashboards.common import (
    DEFAULT_INTERVAL,
    OFFLINE_AFTER,
    STATUS_MAPPINGS,
    bars,
    lines,
    stat_options,
    table_options,
)
from dashboards.model import Dashboard, Panel, Sql

__all__ = ["FLEET_OVERVIEW"]

_LINES, _LINE_STYLE = lines(fill_opacity=10)
_BARS, _BAR_STYLE = bars()

_STATUS = Panel(
    title="Devices by status",
    type="stat",
    description=(
        "Registered devices, and how many are online (heard within offline_after expected "
        "intervals), offline, or never seen. Same rule as the API's device status."
    ),
    targets=(Sql(queries.FLEET_STATUS, "table", ("devices", "online", "offline", "never seen")),),
    width=8,
    height=5,
    options=stat_options(),
    overrides=(
        {
            "matcher": {"id": "byName", "options": "online"},
            "properties": [{"id": "color", "value": {"fixedColor": "green", "mode": "fixed"}}],
        },
        {
            "matcher": {"id": "byName", "options": "offline"},
            "properties": [{"id": "color", "value": {"fixedColor": "red", "mode": "fixed"}}],
        },
    ),
    defaults={"color": {"fixedColor": "text", "mode": "fixed"}},
)

_RATE = Panel(
    title="Readings per second",
    type="timeseries",
    description=(
        "Readings stored per second, fleet-wide, averaged over each bucket. Counted from raw "
        "readings below a 1-minute bucket, from the 1-minute rollup below 1 hour, from the "
        "1-hour rollup above."
    ),
    targets=(Sql(queries.READINGS_PER_SECOND, "time_series", ("time", "readings/s")),),
    width=16,
    height=5,
    unit="reqps",
    options=_LINES,
    custom=_LINE_STYLE,
    min_interval="1s",
)

_REJECTS_OVER_TIME = Panel(
    title="Rejects by reason",
    type="timeseries",
    description=(
        "Dead letters per bucket, stacked by reason code: every invalid message or item "
        "lands in dead_letters with its reason."
    ),
    targets=(Sql(queries.REJECTS_OVER_TIME, "time_series", ("time", "metric", "rejects")),),
    width=16,
    height=8,
    unit="short",
    options=_BARS,
    custom=_BAR_STYLE,
    min_interval="1m",
)

_REJECT_REASONS = Panel(
    title="Reject reasons in range",
    type="piechart",
    description="Dead letters in the time range, by reason code.",
    targets=(Sql(queries.REJECTS_BY_REASON, "table", ("reason", "rejects")),),
    width=8,
    height=8,
    options={
        "displayLabels": ["name"],
        "legend": {
            "displayMode": "table",
            "placement": "right",
            "showLegend": True,
            "values": ["value"],
        },
        "pieType": "pie",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True},
        "tooltip": {"mode": "single", "sort": "none"},
    },
)

_MAP = Panel(
    title="Device locations",
    type="geomap",
    description=(
        "Each device's latest reported position: the newest values of its metrics "
        "'latitude' and 'longitude' (degrees, WGS 84), coloured by status."
    ),
    targets=(
        Sql(
            queries.FLEET_MAP,
            "table",
            ("device_id", "status", "last_seen", "latitude", "longitude"),
        ),
    ),
    width=14,
    height=12,
    defaults=STATUS_MAPPINGS,
    options={
        "basemap": {"config": {}, "name": "Basemap", "type": "default"},
        "controls": {"mouseWheelZoom": True, "showAttribution": True, "showZoom": True},
        "layers": [
            {
                "config": {
                    "showLegend": True,
                    "style": {
                        "color": {"field": "status", "fixed": "blue"},
                        "opacity": 0.8,
                        "size": {"fixed": 6},
                        "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                    },
                },
                "location": {"latitude": "latitude", "longitude": "longitude", "mode": "coords"},
                "name": "Devices",
                "tooltip": True,
                "type": "markers",
            }
        ],
        "tooltip": {"mode": "details"},
        "view": {"allLayers": True, "id": "fit", "lat": 0, "lon": 0, "zoom": 2},
    },
)

_SILENT = Panel(
    title="Devices not online",
    type="table",
    description=(
        "Offline and never-seen devices (at most 200), most recently heard first, with the "
        "interval they are expected to report at."
    ),
    targets=(
        Sql(
            queries.SILENT_DEVICES,
            "table",
            ("device_id", "name", "status", "last_seen", "expected_interval_s"),
        ),
    ),
    width=10,
    height=12,
    defaults=STATUS_MAPPINGS,
    options=table_options(),
    overrides=(
        {
            "matcher": {"id": "byName", "options": "status"},
            "properties": [{"id": "custom.cellOptions", "value": {"type": "color-text"}}],
        },
        {
            "matcher": {"id": "byName", "options": "expected_interval_s"},
            "properties": [{"id": "unit", "value": "s"}],
        },
    ),
)

FLEET_OVERVIEW = Dashboard(
    uid="telemetry-fleet-overview",
    title="Fleet overview",
    description="The whole fleet: who is reporting, how fast, what is rejected and where.",
    variables=(DEFAULT_INTERVAL, OFFLINE_AFTER),
    rows=(
        (_STATUS, _RATE),
        (_REJECT_REASONS, _REJECTS_OVER_TIME),
        (_MAP, _SILENT),
    ),
    time_from="now-6h",
)
