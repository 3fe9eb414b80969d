"""The ``file`` sensor: read a value from a file, e.g. a DS18B20's ``w1_slave``.

Options: ``path`` (required), ``format`` (default ``auto``; ``w1_slave`` for 1-Wire
thermometers), ``key``, ``pattern``, ``scale``, ``offset`` as in :mod:`.parse`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from device_client.config import SensorSpec
from device_client.errors import SensorError
from device_client.sensors._options import PARSER_OPTIONS, build_parser
from device_client.sensors.base import Sensor, register

__all__ = ["FileSensor"]

_MAX_READ = 65536


@register("file")
class FileSensor(Sensor):
    """Reads and parses one file on every sample."""

    def __init__(self, spec: SensorSpec) -> None:
        super().__init__(spec)
        self.check_options("path", *PARSER_OPTIONS)
        self.path = Path(self.option("path", str, required=True))
        self.parser = build_parser(self)

    def read(self) -> Mapping[str, float]:
        """Read the file and parse it."""
        try:
            with self.path.open(encoding="utf-8", errors="replace") as handle:
                text = handle.read(_MAX_READ)
        except OSError as exc:
            raise SensorError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        return self.parser.parse(text)
