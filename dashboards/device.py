"""Device detail: one device's status, latest values, its metrics over time, its rejects."""

from __future__ import annotations

from dashboards import queries
from dashboards.common import (
    DEFAULT_INTERVAL,
    OFFLINE_AFTER,
    STATUS_MAPPINGS,
    lines,
    stat_options,
    table_options,
)
from dashboards.model import Dashboard, Panel, QueryVariable, Sql

__all__ = ["DEVICE_DETAIL"]

_LINES, _LINE_STYLE = lines()

DEVICE = QueryVariable("device", "Device", queries.DEVICE_VARIABLE)
METRIC = QueryVariable("metric", "Metrics", queries.METRIC_VARIABLE, multi=True, include_all=True)
RESOLUTION = QueryVariable("resolution", "Resolution", queries.RESOLUTION_VARIABLE, hidden=True)

_STATUS = Panel(
    title="Status",
    type="stat",
    description=(
        "Online, offline or never seen (the API's rule), when the device was last heard, "
        "how many sequence numbers went missing, and its expected reporting interval."
    ),
    targets=(
        Sql(
            queries.DEVICE_STATUS,
            "table",
            ("status", "last seen", "sequence gaps", "expected interval"),
        ),
    ),
    width=24,
    height=4,
    defaults=STATUS_MAPPINGS,
    options=stat_options(fields="/.*/"),
    overrides=(
        {
            "matcher": {"id": "byName", "options": "last seen"},
            "properties": [{"id": "unit", "value": "dateTimeFromNow"}],
        },
        {
            "matcher": {"id": "byName", "options": "expected interval"},
            "properties": [{"id": "unit", "value": "s"}],
        },
    ),
)

_SERIES = Panel(
    title="$metric",
    type="timeseries",
    description=(
        "Average with the min-max band per bucket, one panel per selected metric. Raw "
        "readings below a 1-minute bucket, the 1-minute rollup below 1 hour, the 1-hour "
        "rollup above. Buckets are at least twice the device's expected interval; a bucket "
        "without a reading breaks the line."
    ),
    targets=(Sql(queries.DEVICE_METRIC_SERIES, "time_series", ("time", "avg", "min", "max")),),
    width=12,
    height=8,
    options=_LINES,
    custom=_LINE_STYLE,
    overrides=(
        {
            "matcher": {"id": "byName", "options": "max"},
            "properties": [
                {"id": "custom.fillBelowTo", "value": "min"},
                {"id": "custom.fillOpacity", "value": 15},
                {"id": "custom.lineWidth", "value": 0},
            ],
        },
        {
            "matcher": {"id": "byName", "options": "min"},
            "properties": [{"id": "custom.lineWidth", "value": 0}],
        },
    ),
    min_interval="$resolution",
    repeat="metric",
)

_LATEST = Panel(
    title="Latest values",
    type="table",
    description="The newest stored value of each selected metric and when it was taken.",
    targets=(Sql(queries.DEVICE_LATEST, "table", ("metric", "value", "reading time")),),
    width=10,
    height=8,
    options=table_options(),
)

_REJECTS = Panel(
    title="Rejected messages",
    type="table",
    description="This device's dead letters in the time range (at most 200), newest first.",
    targets=(
        Sql(
            queries.DEVICE_REJECTS,
            "table",
            ("received_at", "source", "reason", "item_index", "detail"),
        ),
    ),
    width=14,
    height=8,
    options=table_options(),
)

DEVICE_DETAIL = Dashboard(
    uid="telemetry-device-detail",
    title="Device detail",
    description="One device: status, latest values, metrics over time and rejects.",
    variables=(DEFAULT_INTERVAL, OFFLINE_AFTER, DEVICE, METRIC, RESOLUTION),
    rows=((_STATUS,), (_LATEST, _REJECTS), (_SERIES,)),
    time_from="now-24h",
)
