"""The ``synthetic`` sensor: a sine wave plus Gaussian noise, for tests and demos.

Options: ``period_s`` (default 60), ``amplitude`` (1), ``offset`` (0), ``noise`` (0.1,
standard deviation), ``seed`` (optional, for reproducible noise).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping

from device_client.config import SensorSpec
from device_client.sensors.base import Sensor, register

__all__ = ["SyntheticSensor"]


@register("synthetic")
class SyntheticSensor(Sensor):
    """``offset + amplitude * sin(2π t / period_s) + N(0, noise)`` at wall-clock time t."""

    def __init__(self, spec: SensorSpec) -> None:
        super().__init__(spec)
        self.check_options("period_s", "amplitude", "offset", "noise", "seed")
        self.period_s = self.option("period_s", float, 60.0)
        if self.period_s <= 0:
            raise self.config_error("period_s must be positive")
        self.amplitude = self.option("amplitude", float, 1.0)
        self.offset = self.option("offset", float, 0.0)
        self.noise = self.option("noise", float, 0.1)
        if self.noise < 0:
            raise self.config_error("noise must not be negative")
        self._rng = random.Random(self.option("seed", int))  # noqa: S311  (test data)

    def read(self) -> Mapping[str, float]:
        """Return the wave's value now."""
        phase = 2 * math.pi * time.time() / self.period_s
        value = self.offset + self.amplitude * math.sin(phase)
        if self.noise:
            value += self._rng.gauss(0.0, self.noise)
        return {self.name: value}
