"""The full-spool policies with the agent running and no broker to drain to."""

from __future__ import annotations

from pathlib import Path

from device_client import read_status
from simulator.services import free_port
from tests.device_client.helpers import running_agent, wait_for, write_config


def test_drop_oldest_keeps_newest_and_counts(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        device_id="full-drop",
        mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
        sensor_interval_s=0.02,
        batch_interval_s=0.1,
        spool="max_rows = 20",
    )
    with running_agent(path) as agent:
        wait_for(lambda: agent.sampler is not None and agent.sampler.stats.dropped > 10)
    status = read_status(tmp_path / "spool.db")
    assert status.depth_rows == 20
    assert status.counters["dropped_total"] > 10
    assert status.oldest_seq == status.next_seq - 20  # the newest 20 are kept
    assert status.last_error is not None


def test_pause_stops_sampling_and_keeps_oldest(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        device_id="full-pause",
        mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
        sensor_interval_s=0.02,
        batch_interval_s=0.1,
        spool='max_rows = 20\nfull_policy = "pause"',
    )
    with running_agent(path) as agent:
        wait_for(lambda: agent.sampler is not None and agent.sampler.stats.paused > 10)
        assert agent.sampler is not None
        assert agent.sampler.paused
    status = read_status(tmp_path / "spool.db")
    assert status.depth_rows == 20
    assert status.oldest_seq == 1
    assert status.next_seq == 21
    assert status.counters["dropped_total"] == 0
    assert status.counters["paused_samples_total"] > 10
