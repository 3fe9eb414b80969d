"""Options shared by the sensors that parse text (``command`` and ``file``)."""

from __future__ import annotations

import re

from device_client.sensors.base import Sensor
from device_client.sensors.parse import FORMATS, ValueParser

PARSER_OPTIONS = ("format", "key", "pattern", "scale", "offset")


def build_parser(sensor: Sensor, default_format: str = "auto") -> ValueParser:
    """Build the value parser from the sensor's format, key, pattern, scale and offset."""
    fmt = sensor.option("format", str, default_format)
    if fmt not in FORMATS:
        raise sensor.config_error(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    pattern_text = sensor.option("pattern", str, required=fmt == "regex")
    pattern: re.Pattern[str] | None = None
    if pattern_text is not None:
        try:
            pattern = re.compile(pattern_text)
        except re.error as exc:
            raise sensor.config_error(f"pattern is not a valid regular expression: {exc}") from None
        if pattern.groups < 1:
            raise sensor.config_error("pattern needs a group around the number")
        if fmt == "auto":
            fmt = "regex"
    return ValueParser(
        name=sensor.name,
        fmt=fmt,
        key=sensor.option("key", str),
        pattern=pattern,
        scale=sensor.option("scale", float, 1.0),
        offset=sensor.option("offset", float, 0.0),
    )
