from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from device_client import ConfigError, SensorError, SensorSpec, create_sensor
from device_client.sensors import Sensor, available_types, parse_w1_slave, register

W1_OK = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
W1_BAD_CRC = "72 01 4b 46 7f ff 0e 10 57 : crc=57 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
W1_NEGATIVE = "5e ff 4b 46 7f ff 02 10 2d : crc=2d YES\n5e ff 4b 46 7f ff 02 10 2d t=-10125\n"
W1_RESET = "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n"


def sensor(kind: str, name: str = "x", **options: Any) -> Sensor:
    return create_sensor(SensorSpec(type=kind, name=name, interval_s=1.0, options=options))


def test_w1_slave_parsing() -> None:
    assert parse_w1_slave(W1_OK) == 23.125
    assert parse_w1_slave(W1_NEGATIVE) == -10.125
    with pytest.raises(SensorError, match="CRC"):
        parse_w1_slave(W1_BAD_CRC)
    with pytest.raises(SensorError, match="power-on reset"):
        parse_w1_slave(W1_RESET)


def test_file_sensor_ds18b20(tmp_path: Path) -> None:
    w1 = tmp_path / "w1_slave"
    w1.write_text(W1_OK)
    probe = sensor("file", "water_temp", path=str(w1), format="w1_slave")
    assert probe.read() == {"water_temp": 23.125}
    w1.write_text(W1_BAD_CRC)
    with pytest.raises(SensorError, match="CRC"):
        probe.read()
    w1.unlink()
    with pytest.raises(SensorError, match="cannot read"):
        probe.read()


def test_file_sensor_number_scale_and_regex(tmp_path: Path) -> None:
    raw = tmp_path / "temp"
    raw.write_text("48312\n")
    assert sensor("file", "soc", path=str(raw), scale=0.001).read() == {
        "soc": pytest.approx(48.312)
    }
    raw.write_text("temp=48.3'C\n")
    assert sensor("file", "soc", path=str(raw), pattern=r"temp=([\d.]+)").read() == {"soc": 48.3}
    raw.write_text("garbage")
    with pytest.raises(SensorError, match="neither a number nor JSON"):
        sensor("file", "soc", path=str(raw)).read()


def test_command_sensor_number_and_json() -> None:
    py = sys.executable
    assert sensor("command", "n", command=[py, "-c", "print(41.5)"]).read() == {"n": 41.5}
    values = sensor(
        "command", "env", command=[py, "-c", 'print(\'{"t": 21.5, "h": 40, "s": "x"}\')']
    ).read()
    assert values == {"env_t": 21.5, "env_h": 40.0}
    keyed = sensor("command", "t", command=[py, "-c", "print('{\"t\": 21.5}')"], key="t")
    assert keyed.read() == {"t": 21.5}


def test_command_sensor_failures() -> None:
    py = sys.executable
    with pytest.raises(SensorError, match="exited with 3"):
        sensor("command", command=[py, "-c", "import sys; sys.exit(3)"]).read()
    with pytest.raises(SensorError, match="timed out"):
        sensor("command", command=[py, "-c", "import time; time.sleep(5)"], timeout_s=0.3).read()
    with pytest.raises(SensorError, match="cannot run"):
        sensor("command", command=["/nonexistent/program"]).read()
    with pytest.raises(ConfigError, match="must be a list"):
        sensor("command", command="echo 1")


def test_synthetic_sensor() -> None:
    wave = sensor("synthetic", "wave", period_s=10.0, amplitude=2.0, offset=5.0, noise=0.0)
    values = [float(wave.read()["wave"]) for _ in range(20)]
    assert all(3.0 <= v <= 7.0 for v in values)
    noisy = sensor("synthetic", "n", noise=0.5, seed=1)
    assert all(math.isfinite(float(noisy.read()["n"])) for _ in range(10))


def test_linux_host_sensors(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  1000 kB\nMemFree: 100 kB\nMemAvailable:  250 kB\n")
    assert sensor("memory", "mem", path=str(meminfo)).read() == {
        "mem_used_pct": 75.0,
        "mem_available_bytes": 256000.0,
    }
    netdev = tmp_path / "dev"
    netdev.write_text(
        "Inter-|   Receive |  Transmit\n face |bytes packets ...\n"
        "    lo: 999 1 0 0 0 0 0 0 999 1 0 0 0 0 0 0\n"
        "  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n"
        " wlan0: 5 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n"
    )
    assert sensor("network", "net", path=str(netdev)).read() == {
        "net_rx_bytes": 1005.0,
        "net_tx_bytes": 2007.0,
    }
    assert (
        sensor("network", "net", path=str(netdev), interface="eth0").read()["net_rx_bytes"] == 1000
    )
    thermal = tmp_path / "temp"
    thermal.write_text("51540\n")
    assert sensor("cpu_temperature", "cpu_temp", path=str(thermal)).read() == {"cpu_temp": 51.54}
    load = sensor("load").read()
    assert set(load) == {"x_1m", "x_5m", "x_15m"}
    disk = sensor("disk", "disk", mount=str(tmp_path)).read()
    assert 0 <= float(disk["disk_used_pct"]) <= 100
    cpu = sensor("cpu")
    assert cpu.read() == {}
    assert 0 <= float(cpu.read().get("x_used_pct", 0)) <= 100


def test_registry_plugins_and_errors() -> None:
    @register("test_constant")
    class Constant(Sensor):
        def read(self) -> Mapping[str, float]:
            return {self.name: 1.0}

    assert "test_constant" in available_types()
    assert sensor("test_constant", "c").read() == {"c": 1.0}
    with pytest.raises(ConfigError, match=r"unknown type 'bme999'.*available: .*synthetic"):
        sensor("bme999")
    with pytest.raises(ConfigError, match="unknown option 'perod_s'"):
        sensor("synthetic", perod_s=3)
