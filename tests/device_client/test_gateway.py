"""The agent as a gateway and with values of any type: config, sampling, the wire, attributes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from device_client import BatchConfig, ConfigError, SensorSpec, Spool, SpoolConfig, load_config
from device_client.agent import attributes
from device_client.sampler import Sampler
from device_client.sensors import Sensor
from device_client.wire import Value, encode_attributes, encode_reading, wire_values

BASE = """
device_id = "hub-1"
transport = "mqtt"

[mqtt]
url = "mqtt://127.0.0.1:1883"
password = "x"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(BASE + text)
    return path


def test_sensors_may_name_the_child_device_they_read(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
[attributes]
model = "pi4"
site_code = 7

[[sensors]]
type = "synthetic"
name = "temperature"
interval_s = 5
device = "ble-1"

[[sensors]]
type = "synthetic"
name = "temperature"
interval_s = 5
device = "ble-2"

[[sensors]]
type = "synthetic"
name = "temperature"
interval_s = 5
""",
        ),
        {},
    )
    assert [(s.name, s.device) for s in config.sensors] == [
        ("temperature", "ble-1"),
        ("temperature", "ble-2"),
        ("temperature", None),
    ]
    assert "device" not in config.sensors[0].options
    reported = attributes(config)
    assert (reported["model"], reported["site_code"]) == ("pi4", 7)
    assert str(reported["agent"]).startswith("telemetry-device ")


@pytest.mark.parametrize(
    ("sensors", "message"),
    [
        ('type = "synthetic"\ninterval_s = 5\ndevice = "bad id"', "not a valid device id"),
        (
            (
                'type = "synthetic"\ninterval_s = 5\ndevice = "b"\n\n[[sensors]]\n'
                'type = "synthetic"\ninterval_s = 5\ndevice = "b"'
            ),
            "used by another sensor of the same device",
        ),
    ],
)
def test_bad_child_devices_are_one_clear_line(tmp_path: Path, sensors: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, "\n[[sensors]]\n" + sensors), {})


def test_attributes_must_be_a_table_of_scalars(tmp_path: Path) -> None:
    sensor = '\n[[sensors]]\ntype = "synthetic"\ninterval_s = 5\n'
    with pytest.raises(ConfigError, match=r"\[attributes\] tags: expected a string"):
        load_config(write(tmp_path, '\n[attributes]\ntags = ["a"]\n' + sensor), {})


def test_the_wire_keeps_types_and_names_a_child() -> None:
    assert wire_values({"t": 1, "on": True, "mode": "auto", "bad": float("nan")}) == {
        "t": 1.0,
        "on": True,
        "mode": "auto",
    }
    own = json.loads(encode_reading("2026-01-01T00:00:00.000000Z", 7, {"on": False}))
    child = json.loads(encode_reading("2026-01-01T00:00:00.000000Z", 8, {"t": 1.0}, "ble-1"))
    assert own == {"ts": "2026-01-01T00:00:00.000000Z", "seq": 7, "values": {"on": False}}
    # A child's set names it and has no seq: the gateway's counter is not the child's.
    assert child == {
        "device_id": "ble-1",
        "ts": "2026-01-01T00:00:00.000000Z",
        "values": {"t": 1.0},
    }
    assert encode_attributes({"b": 1, "a": "x"}) == b'{"a":"x","b":1}'


class _Hub(Sensor):
    """A multi-device plugin: one read of a bus yields several children's values."""

    def read(self) -> Mapping[str, Value]:
        raise AssertionError("read_devices is what the sampler calls")

    def read_devices(self) -> Mapping[str | None, Mapping[str, Value]]:
        return {"ble-1": {"door": True}, "ble-2": {"mode": "eco", "t": 19.5}}


class _Own(Sensor):
    def read(self) -> Mapping[str, Value]:
        return {"uptime": 12.0}


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(SpoolConfig(path=tmp_path / "spool.db"), "hub-1") as s:
        yield s


def test_a_gateway_sample_is_one_reading_set_per_device(spool: Spool) -> None:
    sensors = [
        _Hub(SensorSpec(type="hub", name="hub", interval_s=1.0)),
        _Own(SensorSpec(type="own", name="uptime", interval_s=1.0)),
    ]
    sampler = Sampler(
        sensors,
        spool,
        BatchConfig(max_readings=100, interval_s=60),
        full_policy="drop_oldest",
        stop=threading.Event(),
    )
    sampler._sample(sensors)
    sampler.commit()
    bodies = [json.loads(row.body) for row in spool.read_after(0, 10)]
    assert [(b.get("device_id"), b["values"], "seq" in b) for b in bodies] == [
        ("ble-1", {"door": True}, False),
        ("ble-2", {"mode": "eco", "t": 19.5}, False),
        (None, {"uptime": 12.0}, True),
    ]
    assert len({b["ts"] for b in bodies}) == 1  # one sample instant
