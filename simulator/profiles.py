"""Device profiles: what a virtual device measures and how its signals behave.

Each profile makes a :class:`Signal` per device from the device's own random generator,
so a fleet is reproducible from a seed. Signals follow a daily cycle (in UTC), carry
Gaussian noise and a slow random-walk drift, and now and then show an anomaly (a spike
that a dashboard or an alert should notice). Every sample has the same metrics, numbers
finite, so the accounting knows how many rows a reading-set makes and of which type each
value is (a pump's ``vibration_alarm`` is a boolean, its ``mode`` a string; its
``running`` stays the number 1 or 0 it always was, so that stored data keeps its type).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["PROFILES", "PUMP_MODES", "Profile", "Signal", "Value", "daily_cycle", "profile_for"]

_DAY_S = 86_400.0
#: A sampled value: a number, a boolean or a string.
Value = float | bool | str
#: What a pump's controller is set to; it runs in cycles only in ``auto``.
PUMP_MODES = ("auto", "manual", "maintenance")


def daily_cycle(t_s: float, peak_hour: float) -> float:
    """Return a value in [-1, 1] that peaks at ``peak_hour`` UTC each day."""
    return math.cos(2 * math.pi * ((t_s / _DAY_S) - peak_hour / 24.0))


class Signal(Protocol):
    """The state of one device's sensors."""

    def sample(self, t_s: float) -> dict[str, Value]:
        """Return the values at epoch time ``t_s`` (calls come in rising time order)."""


class _Base:
    """Noise, drift and anomalies shared by the profiles."""

    def __init__(self, rng: random.Random, anomaly_rate: float) -> None:
        self.rng = rng
        self.anomaly_rate = anomaly_rate
        self.drift = 0.0
        self.last_t_s: float | None = None

    def step(self, t_s: float) -> float:
        """Advance the drift to ``t_s``; return the seconds since the previous sample."""
        dt = 0.0 if self.last_t_s is None else max(0.0, t_s - self.last_t_s)
        self.last_t_s = t_s
        self.drift += self.rng.gauss(0.0, 0.002 * math.sqrt(dt))
        return dt

    def noise(self, sigma: float) -> float:
        """Draw Gaussian noise."""
        return self.rng.gauss(0.0, sigma)

    def anomaly(self) -> bool:
        """Whether this sample is an anomaly."""
        return self.rng.random() < self.anomaly_rate


class Environmental(_Base):
    """Indoor climate: temperature and CO2 follow the working day, humidity the opposite."""

    def __init__(self, rng: random.Random, anomaly_rate: float) -> None:
        super().__init__(rng, anomaly_rate)
        self.base_c = rng.uniform(18.0, 24.0)
        self.pressure_hpa = rng.uniform(1000.0, 1025.0)

    def sample(self, t_s: float) -> dict[str, Value]:
        """Return temperature, humidity, pressure and CO2."""
        dt = self.step(t_s)
        day = daily_cycle(t_s, peak_hour=15)
        self.pressure_hpa += self.noise(0.01 * math.sqrt(dt))
        temperature = self.base_c + 3.0 * day + 10 * self.drift + self.noise(0.1)
        if self.anomaly():
            temperature += self.rng.choice((-15.0, 25.0))
        return {
            "temperature": round(temperature, 2),
            "humidity": round(min(100.0, max(0.0, 45.0 - 12.0 * day + self.noise(0.5))), 1),
            "pressure": round(self.pressure_hpa + self.noise(0.05), 2),
            "co2": round(max(380.0, 450.0 + 250.0 * max(0.0, day) + self.noise(15.0)), 0),
        }


class Pump(_Base):
    """A pump that runs in cycles; bearing wear drifts vibration up, cavitation spikes it.

    Its controller is mostly in ``auto`` mode, now and then switched to ``manual`` (the
    pump runs until switched back) or ``maintenance`` (it stands still).
    """

    def __init__(self, rng: random.Random, anomaly_rate: float) -> None:
        super().__init__(rng, anomaly_rate)
        self.running = rng.random() < 0.7
        self.until_s: float | None = None
        self.mode = "auto"
        self.mode_until_s: float | None = None
        self.nominal_bar = rng.uniform(3.0, 6.0)

    def _switch_mode(self, t_s: float) -> None:
        if self.mode_until_s is None or t_s >= self.mode_until_s:
            if self.mode_until_s is not None:
                leaving_auto = self.mode == "auto"
                self.mode = self.rng.choice(PUMP_MODES[1:]) if leaving_auto else "auto"
            stay_s = (3_600.0, 14_400.0) if self.mode == "auto" else (300.0, 1_800.0)
            self.mode_until_s = t_s + self.rng.uniform(*stay_s)

    def sample(self, t_s: float) -> dict[str, Value]:
        """Return pressure, flow, vibration, whether it runs, whether vibration alarms, mode."""
        self.step(t_s)
        self._switch_mode(t_s)
        if self.until_s is None or t_s >= self.until_s:
            if self.until_s is not None:
                self.running = not self.running
            self.until_s = t_s + self.rng.uniform(60.0, 900.0)
        if self.mode != "auto":
            self.running = self.mode == "manual"
        if self.running:
            pressure = self.nominal_bar * (1 + 0.05 * daily_cycle(t_s, 8)) + self.noise(0.05)
            flow = 4.0 * pressure + self.noise(0.3)
            vibration = 1.5 + abs(50 * self.drift) + abs(self.noise(0.1))
        else:
            pressure, flow, vibration = 0.2 + abs(self.noise(0.02)), 0.0, abs(self.noise(0.02))
        alarm = self.anomaly()
        if alarm:
            vibration *= 6.0
            pressure *= 0.5
        return {
            "pressure": round(pressure, 3),
            "flow": round(max(0.0, flow), 3),
            "vibration": round(vibration, 3),
            "running": 1.0 if self.running else 0.0,
            "vibration_alarm": alarm,
            "mode": self.mode,
        }


class Vehicle(_Base):
    """A vehicle: GPS position along a heading, speed by time of day, fuel burnt by distance."""

    def __init__(self, rng: random.Random, anomaly_rate: float) -> None:
        super().__init__(rng, anomaly_rate)
        self.lat = rng.uniform(47.0, 55.0)
        self.lon = rng.uniform(5.0, 15.0)
        self.heading = rng.uniform(0.0, 360.0)
        self.speed_kmh = rng.uniform(0.0, 60.0)
        self.fuel_pct = rng.uniform(20.0, 100.0)

    def sample(self, t_s: float) -> dict[str, Value]:
        """Return latitude, longitude, speed, heading and fuel level."""
        dt = self.step(t_s)
        target = max(0.0, 50.0 + 40.0 * daily_cycle(t_s, 12) + self.noise(5.0))
        self.speed_kmh += (target - self.speed_kmh) * min(1.0, dt / 30.0) + self.noise(1.0)
        self.speed_kmh = max(0.0, self.speed_kmh)
        self.heading = (self.heading + self.noise(5.0)) % 360.0
        km = self.speed_kmh * dt / 3600.0
        self.lat += km / 111.0 * math.cos(math.radians(self.heading))
        self.lon += (
            km / (111.0 * math.cos(math.radians(self.lat))) * math.sin(math.radians(self.heading))
        )
        self.fuel_pct -= km * 0.08
        if self.fuel_pct < 5.0:
            self.fuel_pct = 100.0
        speed = self.speed_kmh * (3.0 if self.anomaly() else 1.0)
        return {
            "lat": round(self.lat, 6),
            "lon": round(self.lon, 6),
            "speed": round(speed, 1),
            "heading": round(self.heading, 1),
            "fuel": round(self.fuel_pct, 2),
        }


class Battery(_Base):
    """A battery device: charge drains (faster when warm) and is recharged when nearly empty."""

    def __init__(self, rng: random.Random, anomaly_rate: float) -> None:
        super().__init__(rng, anomaly_rate)
        self.charge_pct = rng.uniform(30.0, 100.0)
        self.drain_pct_per_h = rng.uniform(0.5, 3.0)

    def sample(self, t_s: float) -> dict[str, Value]:
        """Return charge, voltage and temperature."""
        dt = self.step(t_s)
        temperature = 20.0 + 8.0 * daily_cycle(t_s, 14) + self.noise(0.2)
        self.charge_pct -= self.drain_pct_per_h * (1 + max(0.0, temperature - 25) / 20) * dt / 3600
        if self.charge_pct < 5.0:
            self.charge_pct = 100.0
        voltage = 3.3 + 0.9 * self.charge_pct / 100.0 + self.noise(0.005)
        if self.anomaly():
            voltage -= 0.8
        return {
            "battery": round(self.charge_pct, 3),
            "voltage": round(voltage, 3),
            "temperature": round(temperature, 2),
        }


@dataclass(frozen=True)
class Profile:
    """A kind of device: its metrics, how to make its signal, and its metrics' types.

    ``types`` names the metrics that are not numbers: ``boolean`` or ``string``.
    """

    name: str
    metrics: tuple[str, ...]
    make: Callable[[random.Random, float], Signal]
    types: Mapping[str, str] = field(default_factory=dict)

    def type_of(self, metric: str) -> str:
        """Return the type of a metric's values: number, boolean or string."""
        return self.types.get(metric, "number")

    def signal(self, rng: random.Random, anomaly_rate: float = 0.001) -> Signal:
        """Make the signal of one device."""
        return self.make(rng, anomaly_rate)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("environmental", ("temperature", "humidity", "pressure", "co2"), Environmental),
        Profile(
            "pump",
            ("pressure", "flow", "vibration", "running", "vibration_alarm", "mode"),
            Pump,
            {"vibration_alarm": "boolean", "mode": "string"},
        ),
        Profile("vehicle", ("lat", "lon", "speed", "heading", "fuel"), Vehicle),
        Profile("battery", ("battery", "voltage", "temperature"), Battery),
    )
}


def profile_for(name: str) -> Profile:
    """Look up a profile by name; KeyError names the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None
