"""The CI-sized load run: about 200 devices for 30 s, both protocols, faults on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.cli import main
from tests.simulator.conftest import Platform

pytestmark = [pytest.mark.faults, pytest.mark.parametrize("storage_mode", ["plain"])]


def _args(platform: Platform, tmp_path: Path, duration_s: int) -> list[str]:
    return [
        "load",
        "--api-url", platform.api_url,
        "--api-key", platform.api_key,
        "--ingest-url", platform.ingest_url,
        "--mqtt-url", platform.mqtt_url,
        "--devices", "200",
        "--duration", str(duration_s),
        "--protocols", "mqtt,http,senml",
        "--fleet", str(tmp_path / "fleet.json"),
        "--seed", "7",
        "--duplicate-share", "0.05",
        "--malformed-share", "0.02",
        "--late-share", "0.05",
        "--late-max-s", "5",
        "--skew-share", "0.1",
        "--skew-max-s", "400",
        "--offline-share", "0.1",
        "--offline-s", "4",
        "--burst-rate", "0.5",
        "--burst-size", "10",
        "--settle-s", "20",
        "--json", str(tmp_path / "report.json"),
        "--quiet",
    ]  # fmt: skip


def test_load_run_loses_and_duplicates_nothing(
    platform: Platform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(_args(platform, tmp_path, 30))
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert code == 0, out
    assert report["passed"], report["problems"]
    assert report["lost"] == 0
    assert report["duplicates_stored"] == 0
    assert report["readings_stored"] == report["readings_sent"] > 0
    assert report["rejected"] == report["rejected_expected"] > 0
    assert report["rejects_by_reason"] == report["expected_by_reason"]
    assert report["expected_by_reason"].get("future_timestamp", 0) > 0
    assert report["duplicate_sends"] > 0
    assert report["latency_samples"] > 0
    assert "PASS" in out
