"""Turning text (a file's contents, a program's output) into metric values.

Formats: ``number`` (the text is one number), ``json`` (a number or an object of numbers;
``key`` picks one field), ``regex`` (``pattern``'s first group), ``w1_slave`` (the Linux
1-Wire thermometer file), and ``auto`` (number, else JSON). ``scale`` and ``offset`` apply
to every value: ``value * scale + offset``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from device_client.errors import SensorError

__all__ = ["FORMATS", "ValueParser", "parse_w1_slave"]

FORMATS = ("auto", "number", "json", "regex", "w1_slave")
# A DS18B20 reads exactly 85 °C after a power-on reset, before its first conversion.
_W1_POWER_ON_RESET = 85000
_W1_TEMP = re.compile(r"\bt=(-?\d+)\s*$")


def parse_w1_slave(text: str) -> float:
    """Read °C from a ``w1_slave`` file; raise SensorError on a CRC error or reset value."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise SensorError(f"w1_slave: expected two lines, got {len(lines)}")
    if not lines[0].rstrip().endswith("YES"):
        raise SensorError("w1_slave: CRC check failed (first line does not end in YES)")
    match = _W1_TEMP.search(lines[1])
    if match is None:
        raise SensorError("w1_slave: no t=<millidegrees> on the second line")
    raw = int(match.group(1))
    if raw == _W1_POWER_ON_RESET:
        raise SensorError("w1_slave: 85 °C power-on reset value, not a measurement")
    return raw / 1000.0


def _number(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise SensorError(f"not a number: {text.strip()[:60]!r}") from None
    if not math.isfinite(value):
        raise SensorError(f"not a finite number: {text.strip()[:60]!r}")
    return value


@dataclass(frozen=True)
class ValueParser:
    """Parse text into ``{metric: value}`` for the sensor called ``name``."""

    name: str
    fmt: str = "auto"
    key: str | None = None
    pattern: re.Pattern[str] | None = None
    scale: float = 1.0
    offset: float = 0.0

    def parse(self, text: str) -> dict[str, float]:
        """Parse ``text``; raise SensorError when it holds no usable value."""
        values = self._parse(text)
        return {name: v * self.scale + self.offset for name, v in values.items()}

    def _parse(self, text: str) -> dict[str, float]:
        if self.fmt == "w1_slave":
            return {self.name: parse_w1_slave(text)}
        if self.fmt == "regex":
            assert self.pattern is not None
            match = self.pattern.search(text)
            if match is None or not match.groups():
                raise SensorError(f"pattern {self.pattern.pattern!r} did not match")
            return {self.name: _number(match.group(1))}
        if self.fmt == "number":
            return {self.name: _number(text)}
        if self.fmt == "auto":
            try:
                return {self.name: _number(text)}
            except SensorError:
                pass
        return self._json(text)

    def _json(self, text: str) -> dict[str, float]:
        try:
            doc = json.loads(text)
        except ValueError:
            raise SensorError(f"neither a number nor JSON: {text.strip()[:60]!r}") from None
        if self.key is not None:
            if not isinstance(doc, dict) or self.key not in doc:
                raise SensorError(f"JSON has no key {self.key!r}")
            doc = doc[self.key]
        if isinstance(doc, (int, float)) and not isinstance(doc, bool):
            return {self.name: float(doc)}
        if isinstance(doc, dict):
            values = {
                f"{self.name}_{k}": float(v)
                for k, v in doc.items()
                if isinstance(v, (int, float)) and math.isfinite(v)
            }
            if values:
                return values
        raise SensorError("JSON holds no number (expected a number or an object of numbers)")
