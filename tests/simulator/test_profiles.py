from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from simulator.profiles import PROFILES, PUMP_MODES, Value, daily_cycle, profile_for

DAY = 86_400.0
T0 = 1_795_219_200.0  # 2026-11-21T00:00:00Z


def number(values: dict[str, Value], name: str) -> float:
    value = values[name]
    assert isinstance(value, float), (name, value)
    return value


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_sample_has_the_profile_metrics_and_finite_values(name: str) -> None:
    profile = profile_for(name)
    signal = profile.signal(random.Random(1), anomaly_rate=0.05)
    for i in range(2_000):
        values = signal.sample(T0 + i * 30.0)
        assert tuple(values) == profile.metrics
        for metric, value in values.items():
            kind = profile.type_of(metric)
            if kind == "number":
                assert math.isfinite(number(values, metric))
            else:
                assert isinstance(value, bool if kind == "boolean" else str), (metric, value)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_the_same_seed_gives_the_same_signal(name: str) -> None:
    def run() -> list[dict[str, Value]]:
        signal = profile_for(name).signal(random.Random(42))
        return [signal.sample(T0 + i) for i in range(50)]

    assert run() == run()


def test_daily_cycle_peaks_at_the_hour_given() -> None:
    assert daily_cycle(T0 + 15 * 3600, peak_hour=15) == pytest.approx(1.0)
    assert daily_cycle(T0 + 3 * 3600, peak_hour=15) == pytest.approx(-1.0)


def test_environmental_temperature_follows_the_day() -> None:
    signal = profile_for("environmental").signal(random.Random(3), anomaly_rate=0.0)
    afternoon, night = [], []
    for day in range(3):
        for hour in range(24):
            value = number(signal.sample(T0 + day * DAY + hour * 3600), "temperature")
            if 13 <= hour <= 17:
                afternoon.append(value)
            if 1 <= hour <= 5:
                night.append(value)
    assert statistics.mean(afternoon) > statistics.mean(night) + 3


def test_anomalies_show_as_outliers_at_the_rate_given() -> None:
    signal = profile_for("pump").signal(random.Random(5), anomaly_rate=0.02)
    quiet = profile_for("pump").signal(random.Random(5), anomaly_rate=0.0)
    spikes = alarms = 0
    for i in range(5_000):
        t = T0 + i
        sample = signal.sample(t)
        alarms += sample["vibration_alarm"] is True
        if number(sample, "vibration") > 3 * max(number(quiet.sample(t), "vibration"), 0.5):
            spikes += 1
            assert sample["vibration_alarm"] is True  # a spike always raises the alarm
    assert 60 <= alarms <= 140
    assert spikes >= alarms / 4  # a pump standing still barely vibrates, spike or not


def test_a_pump_mostly_runs_in_auto_and_stands_still_in_maintenance() -> None:
    signal = profile_for("pump").signal(random.Random(7), anomaly_rate=0.0)
    seen: dict[str, int] = dict.fromkeys(PUMP_MODES, 0)
    for i in range(7 * 24 * 60):
        sample = signal.sample(T0 + i * 60.0)
        mode = sample["mode"]
        assert isinstance(mode, str)
        seen[mode] += 1
        assert sample["vibration_alarm"] is False
        if mode == "maintenance":
            assert sample["running"] == 0.0
        elif mode == "manual":
            assert sample["running"] == 1.0
    assert seen["auto"] > sum(seen.values()) / 2
    assert seen["manual"] > 0
    assert seen["maintenance"] > 0


def test_battery_drains_and_is_recharged() -> None:
    signal = profile_for("battery").signal(random.Random(9))
    levels = [number(signal.sample(T0 + h * 3600), "battery") for h in range(24 * 60)]
    drops = sum(1 for a, b in itertools.pairwise(levels) if b < a)
    assert drops > len(levels) * 0.9
    assert any(b > a + 50 for a, b in itertools.pairwise(levels))


def test_vehicle_moves_at_its_speed() -> None:
    signal = profile_for("vehicle").signal(random.Random(11), anomaly_rate=0.0)
    first = signal.sample(T0 + 12 * 3600)
    last = first
    for i in range(1, 601):
        last = signal.sample(T0 + 12 * 3600 + i)
    lat0, lat1 = number(first, "lat"), number(last, "lat")
    moved_km = math.hypot(
        (lat1 - lat0) * 111,
        (number(last, "lon") - number(first, "lon")) * 111 * math.cos(math.radians(lat0)),
    )
    assert 0 < moved_km < 600 / 3600 * 200
    assert 0 <= number(last, "fuel") <= 100


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="environmental"):
        profile_for("toaster")
