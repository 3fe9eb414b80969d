from __future__ import annotations

from pathlib import Path

import pytest

from simulator.cli import build_parser, config_from_args, main
from simulator.errors import ConfigError
from simulator.fleet import Fleet, parse_protocols
from simulator.latency import percentile


def test_protocols_expand_senml_to_both_transports() -> None:
    assert parse_protocols("mqtt,http,senml") == ("mqtt", "http", "senml-mqtt", "senml-http")
    with pytest.raises(ConfigError, match="unknown protocol 'coap'"):
        parse_protocols("mqtt,coap")


def test_the_fleet_file_resumes_devices_tokens_and_counters(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    fleet = Fleet.load(path)
    devices = fleet.ensure(5, "sim", ["pump", "vehicle"], ("mqtt", "http"))
    devices[1].token, devices[1].seq, devices[1].last_ts_ms = "dt_x", 9, 123
    fleet.save()
    assert path.stat().st_mode & 0o777 == 0o600
    again = Fleet.load(path)
    grown = again.ensure(7, "sim", ["battery"], ("http",))
    assert [d.device_id for d in grown] == [f"sim-{i:05d}" for i in range(7)]
    assert (grown[1].token, grown[1].seq, grown[1].last_ts_ms) == ("dt_x", 9, 123)
    assert (grown[1].profile, grown[1].protocol) == ("vehicle", "http")
    assert grown[6].profile == "battery"


def test_a_broken_fleet_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not a fleet file"):
        Fleet.load(path)


def test_percentile_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) is None


def test_flags_build_the_run_config() -> None:
    args = build_parser({}).parse_args(
        ["load", "--api-key", "k", "--devices", "10", "--protocols", "senml-http",
         "--malformed-share", "0.1", "--burst-rate", "2"]
    )  # fmt: skip
    config, endpoints = config_from_args(args)
    assert config.devices == 10
    assert config.duration_s == 60.0
    assert config.target_rate == 10.0
    assert config.protocols == ("senml-http",)
    assert config.faults.malformed_share == 0.1
    assert endpoints.api_key == "k"


def test_errors_are_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", "--api-key", "k", "--profiles", "toaster", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "toaster" in err
    assert err.count("\n") == 1


def test_a_missing_api_key_is_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("API_ADMIN_KEY", raising=False)
    assert main(["run", "--duration", "1"]) == 1
    assert "API_ADMIN_KEY" in capsys.readouterr().err


def test_a_share_above_one_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["load", "--duplicate-share", "2"])
    assert exc.value.code == 2


def test_an_unreachable_api_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["run", "--api-key", "k", "--api-url", "http://127.0.0.1:9", "--duration", "1", "--quiet"]
    )
    assert code == 1
    assert capsys.readouterr().err.startswith("error: POST http://127.0.0.1:9/v1/devices")


def test_no_command_prints_help() -> None:
    assert main([]) == 2
