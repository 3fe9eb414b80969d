from __future__ import annotations

from pathlib import Path

import pytest

from device_client import ConfigError, load_config
from device_client.cli import EXIT_CONFIG, main

GOOD = """
device_id = "pi-kitchen"
transport = "mqtt"

[mqtt]
url = "mqtts://broker.example:8884"
password = "s3cret"
window = 8

[batch]
max_readings = 50
interval_s = 5

[spool]
path = "state/spool.db"
max_rows = 1000
full_policy = "pause"

[[sensors]]
type = "cpu_temperature"
interval_s = 10

[[sensors]]
type = "file"
name = "water_temp"
path = "/sys/bus/w1/devices/28-0000/w1_slave"
format = "w1_slave"
interval_s = 30
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_good_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), {})
    assert config.device_id == "pi-kitchen"
    assert config.mqtt is not None
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.use_tls) == (
        "broker.example",
        8884,
        True,
    )
    assert config.mqtt.username == "pi-kitchen"
    assert config.mqtt.password == "s3cret"
    assert config.batch.max_readings == 50
    assert config.spool.path == tmp_path / "state" / "spool.db"
    assert config.spool.full_policy == "pause"
    assert [s.name for s in config.sensors] == ["cpu_temperature", "water_temp"]
    assert config.sensors[1].options["format"] == "w1_slave"


def test_secrets_never_in_repr(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), {})
    assert "s3cret" not in repr(config)


def test_env_overrides(tmp_path: Path) -> None:
    env = {
        "TELEMETRY_DEVICE_ID": "pi-garage",
        "TELEMETRY_MQTT_PASSWORD": "from-env",
        "TELEMETRY_SPOOL_MAX_ROWS": "2_000",
        "TELEMETRY_SPOOL_FULL_POLICY": "drop_oldest",
        "TELEMETRY_BATCH_INTERVAL_S": "2.5",
        "TELEMETRY_MQTT_STATUS_TOPIC": "false",
    }
    config = load_config(write(tmp_path, GOOD), env)
    assert config.device_id == "pi-garage"
    assert config.mqtt is not None
    assert config.mqtt.password == "from-env"
    assert config.mqtt.username == "pi-garage"
    assert config.mqtt.status_topic is False
    assert config.spool.max_rows == 2000
    assert config.spool.full_policy == "drop_oldest"
    assert config.batch.interval_s == 2.5


def test_http_transport_from_env_and_token_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok-123\n")
    text = GOOD.replace('transport = "mqtt"', 'transport = "http"').replace(
        "[batch]", '[http]\nurl = "https://ingest.example"\ntoken_file = "token"\n\n[batch]'
    )
    config = load_config(write(tmp_path, text), {})
    assert config.http is not None
    assert config.http.url == "https://ingest.example/v1/telemetry"
    assert config.http.token == "tok-123"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ('device_id = "pi-kitchen"', 'device_id = "bad id!"'),
            "device_id: 'bad id!' is not a valid",
        ),
        (
            ('transport = "mqtt"', 'transport = "carrier-pigeon"'),
            "transport: expected one of mqtt, http",
        ),
        (("max_rows = 1000", "max_rows = -1"), "[spool] max_rows: expected a positive integer"),
        (("max_rows = 1000", 'max_rows = "many"'), "[spool] max_rows: expected an integer"),
        (("window = 8", "windw = 8"), "[mqtt] windw: unknown key"),
        (
            ('url = "mqtts://broker.example:8884"', 'url = "http://x"'),
            "[mqtt] url: expected mqtt://",
        ),
        (('full_policy = "pause"', 'full_policy = "panic"'), "full_policy: expected one of"),
        (("interval_s = 30", "interval_s = 0"), "interval_s: expected a positive number"),
        (("[mqtt]", "[mqtt"), "invalid TOML"),
    ],
)
def test_bad_config_one_clear_line(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    path = write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_bad_env_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TELEMETRY_SPOOL_MAX_ROWS"):
        load_config(write(tmp_path, GOOD), {"TELEMETRY_SPOOL_MAX_ROWS": "lots"})


def test_missing_mqtt_url(tmp_path: Path) -> None:
    text = GOOD.replace('url = "mqtts://broker.example:8884"\n', "")
    with pytest.raises(ConfigError, match=r"\[mqtt\] url: is required.*TELEMETRY_MQTT_URL"):
        load_config(write(tmp_path, text), {})


def test_unknown_sensor_type_and_option(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('type = "cpu_temperature"', 'type = "flux"'))
    assert main(["check-config", "-c", str(path)]) == EXIT_CONFIG
    path = write(tmp_path, GOOD.replace('format = "w1_slave"', 'formt = "w1_slave"'))
    assert main(["check-config", "-c", str(path)]) == EXIT_CONFIG


def test_cli_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.replace("max_rows = 1000", "max_rows = 0"))
    assert main(["run", "-c", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert "max_rows" in err
    assert main(["status", "-c", str(tmp_path / "missing.toml")]) == EXIT_CONFIG


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "-c", str(write(tmp_path, GOOD))]) == 0
    assert "config OK: device pi-kitchen" in capsys.readouterr().out
