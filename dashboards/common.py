"""Pieces the three dashboards share: the status constants and colours, and series styles."""

from __future__ import annotations

from dashboards.model import Constant, JsonObject

__all__ = [
    "DEFAULT_INTERVAL",
    "OFFLINE_AFTER",
    "STATUS_MAPPINGS",
    "bars",
    "lines",
    "stat_options",
    "table_options",
]

DEFAULT_INTERVAL = Constant(
    "default_interval_s",
    "60",
    "Expected reporting interval (s) of devices that declare none: API_DEFAULT_INTERVAL_S",
)
OFFLINE_AFTER = Constant(
    "offline_after",
    "3",
    "A device is offline after this many expected intervals unheard: API_OFFLINE_AFTER_INTERVALS",
)

STATUS_MAPPINGS: JsonObject = {
    "mappings": [
        {
            "type": "value",
            "options": {
                "online": {"color": "green", "index": 0, "text": "online"},
                "offline": {"color": "red", "index": 1, "text": "offline"},
                "never_seen": {"color": "text", "index": 2, "text": "never seen"},
            },
        }
    ]
}

_LEGEND: JsonObject = {"displayMode": "list", "placement": "bottom", "showLegend": True}


def lines(*, fill_opacity: int = 0) -> tuple[JsonObject, JsonObject]:
    """Options and field style of a line chart that breaks where a value is missing."""
    custom: JsonObject = {
        "drawStyle": "line",
        "fillOpacity": fill_opacity,
        "insertNulls": False,
        "lineWidth": 1,
        "showPoints": "auto",
        "spanNulls": False,
    }
    options: JsonObject = {"legend": _LEGEND, "tooltip": {"mode": "multi", "sort": "none"}}
    return options, custom


def bars() -> tuple[JsonObject, JsonObject]:
    """Options and field style of stacked bars (counts per bucket)."""
    custom: JsonObject = {
        "drawStyle": "bars",
        "fillOpacity": 80,
        "lineWidth": 1,
        "stacking": {"group": "A", "mode": "normal"},
    }
    options: JsonObject = {"legend": _LEGEND, "tooltip": {"mode": "multi", "sort": "desc"}}
    return options, custom


def stat_options(*, fields: str = "") -> JsonObject:
    """Options of a stat panel showing each field's last value with its name."""
    return {
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": fields, "values": False},
        "textMode": "value_and_name",
    }


def table_options() -> JsonObject:
    """Options of a plain table."""
    return {"cellHeight": "sm", "showHeader": True}
