"""The ``command`` sensor: run a program and read a number or JSON from its output.

Options: ``command`` (required; a list of arguments, run without a shell), ``timeout_s``
(default 5), and the text options of :mod:`.parse` (``format``, ``key``, ``pattern``,
``scale``, ``offset``). A non-zero exit status or a timeout skips the sample.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from device_client.config import SensorSpec
from device_client.errors import SensorError
from device_client.sensors._options import PARSER_OPTIONS, build_parser
from device_client.sensors.base import Sensor, register

__all__ = ["CommandSensor"]


@register("command")
class CommandSensor(Sensor):
    """Runs a program per sample and parses its standard output."""

    def __init__(self, spec: SensorSpec) -> None:
        super().__init__(spec)
        self.check_options("command", "timeout_s", *PARSER_OPTIONS)
        argv = self.option("command", list, required=True)
        if not argv or not all(isinstance(arg, str) and arg for arg in argv):
            raise self.config_error("command must be a non-empty list of strings")
        self.argv: list[str] = argv
        self.timeout_s = self.option("timeout_s", float, 5.0)
        if self.timeout_s <= 0:
            raise self.config_error("timeout_s must be positive")
        self.parser = build_parser(self)

    def read(self) -> Mapping[str, float]:
        """Run the program and parse what it printed."""
        try:
            done = subprocess.run(  # noqa: S603  (argv from the operator's config, no shell)
                self.argv,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SensorError(f"{self.argv[0]} timed out after {self.timeout_s:g} s") from None
        except OSError as exc:
            raise SensorError(f"cannot run {self.argv[0]}: {exc.strerror or exc}") from exc
        if done.returncode != 0:
            detail = done.stderr.strip().splitlines()[-1:] or [""]
            raise SensorError(f"{self.argv[0]} exited with {done.returncode}: {detail[0][:200]}")
        return self.parser.parse(done.stdout)
