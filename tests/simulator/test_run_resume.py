"""``run`` end to end, then a second run resuming the same fleet file.

The first ``run`` registers 20 devices into the fleet file and sends; every reading it
reports acknowledged must be stored. A ``load`` with the same file must register nothing
again (same ids and tokens, same device count in the database), go on with each device's
``seq`` (no gap) and time (no reading identity re-used, so nothing is stored twice).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from simulator.cli import main
from tests.simulator.conftest import Platform

pytestmark = [pytest.mark.faults, pytest.mark.parametrize("storage_mode", ["plain"])]

DEVICES = 20
_ACKED = re.compile(r"readings ([\d,]+) acked")


def _common(platform: Platform, fleet: Path) -> list[str]:
    return [
        "--api-url", platform.api_url,
        "--api-key", platform.api_key,
        "--ingest-url", platform.ingest_url,
        "--mqtt-url", platform.mqtt_url,
        "--devices", str(DEVICES),
        "--rate", "40",
        "--duration", "3",
        "--protocols", "mqtt,http",
        "--fleet", str(fleet),
        "--drain-s", "15",
        "--seed", "11",
        "--quiet",
    ]  # fmt: skip


def _fleet(path: Path) -> dict[str, dict[str, Any]]:
    doc = json.loads(path.read_text())
    return {d["device_id"]: d for d in doc["devices"]}


def _stored(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        # Numbers and the pumps' booleans and strings: a reading is a row of either table.
        row = conn.execute(
            "SELECT count(*) FROM (SELECT device_key FROM readings"
            " UNION ALL SELECT device_key FROM readings_typed) r JOIN devices d USING (device_key)"
            " WHERE d.device_id LIKE 'sim-%'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _wait_stored(db_url: str, expected: int, timeout_s: float = 15.0) -> int:
    """MQTT is acknowledged by the broker before the ingest commits: wait for the count."""
    deadline = time.monotonic() + timeout_s
    while (stored := _stored(db_url)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return stored


def _devices(db_url: str) -> dict[str, tuple[int | None, int]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT device_id, last_seq, seq_gaps FROM devices").fetchall()
    return {device_id: (last_seq, gaps) for device_id, last_seq, gaps in rows}


def test_run_then_resume_registers_once_and_reuses_no_reading(
    platform: Platform, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet_path = tmp_path / "fleet.json"

    # 1. `run`: registers the fleet into the file, sends, reports what was acknowledged.
    code = main(["run", *_common(platform, fleet_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    match = _ACKED.search(out)
    assert match is not None, out
    acked_first = int(match.group(1).replace(",", ""))
    assert acked_first > 0
    first = _fleet(fleet_path)
    assert sorted(first) == [f"sim-{i:05d}" for i in range(DEVICES)]
    assert all(d["token"] and d["seq"] > 0 for d in first.values()), first
    assert fleet_path.stat().st_mode & 0o777 == 0o600
    assert _wait_stored(db_url, acked_first) == acked_first
    after_first = _devices(db_url)
    assert len(after_first) == DEVICES
    # Every reading-set sent was acknowledged and stored: the server saw each last seq.
    assert after_first == {device_id: (d["seq"], 0) for device_id, d in first.items()}

    # 2. `load` on the same fleet file: resumes, registers nothing, re-uses no identity.
    report_path = tmp_path / "report.json"
    code = main(
        ["load", *_common(platform, fleet_path), "--settle-s", "15", "--json", str(report_path)]
    )
    out = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert code == 0, out
    assert report["passed"], report["problems"]
    assert report["lost"] == report["duplicates_stored"] == report["unexpected"] == 0
    acked_second = report["readings_acked"]
    assert acked_second > 0
    second = _fleet(fleet_path)
    assert sorted(second) == sorted(first)
    for device_id, device in second.items():
        before = first[device_id]
        assert (device["token"], device["profile"], device["protocol"]) == (
            before["token"],
            before["profile"],
            before["protocol"],
        ), device_id
        assert device["seq"] > before["seq"], device_id
        assert device["last_ts_ms"] > before["last_ts_ms"], device_id
    # No reading of the second run landed on one of the first: the rows add up exactly.
    assert _wait_stored(db_url, acked_first + acked_second) == acked_first + acked_second
    after_second = _devices(db_url)
    assert len(after_second) == DEVICES
    # Seqs went on from where the first run stopped: grown, and no gap at the resume.
    assert after_second == {device_id: (d["seq"], 0) for device_id, d in second.items()}
    for device_id, (last_seq, _) in after_second.items():
        assert last_seq is not None
        assert last_seq > (after_first[device_id][0] or 0), device_id
