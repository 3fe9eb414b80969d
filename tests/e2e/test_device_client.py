"""The device agent against the real ingest: every reading stored once through outages.

The agent runs as its own process (``python -m device_client run --config FILE``) with two
synthetic sensors sampled at 50 Hz, against a real ingest process, Mosquitto and
PostgreSQL. After each fault the agent is stopped cleanly and the test checks, from both
ends, that nothing was lost and nothing stored twice: the spool is empty, the agent's
counters say every seq it numbered was acknowledged, the database holds exactly two rows
for each of those reading-sets, and the ingest's seq bookkeeping saw 1..N with no gap.

The agent numbers reading-sets when they are committed to its spool, so a contiguous
sequence in the database proves that no spooled reading went missing, even across a
``kill -9`` (which loses only the batch still in memory, before it was numbered).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from device_client import SpoolStatus, read_status
from simulator.services import MosquittoServer
from tests.e2e.helpers import count_readings, new_device, query, wait_for
from tests.support.mqtt import TestClient
from tests.support.processes import ServiceProcess
from tests.support.proxy import TcpProxy

pytestmark = [pytest.mark.faults, pytest.mark.parametrize("storage_mode", ["plain"])]

ROOT = Path(__file__).resolve().parents[2]
METRICS_PER_SET = 2
SENSOR_INTERVAL_S = 0.02
OUTAGE_S = 3.0
# Sampled but not yet acknowledged in steady state: 50 sets a second, a batch every 0.2 s,
# and a receipt a moment after its commit.
_STEADY_DEPTH_ROWS = 30


def write_config(
    directory: Path, device_id: str, *, mqtt_url: str = "", http_url: str = "", token: str = ""
) -> Path:
    """An agent config: two synthetic 50 Hz sensors, small batches, quick reconnects."""
    if mqtt_url:
        # Mosquitto here allows anonymous clients: the password is only there to be sent.
        link = (
            f'transport = "mqtt"\n[mqtt]\nurl = "{mqtt_url}"\npassword = "x"\nkeepalive_s = 5\n'
            "receipt_timeout_s = 3\n"
        )
    else:
        link = f'transport = "http"\n[http]\nurl = "{http_url}"\ntoken = "{token}"\ntimeout_s = 5\n'
    sensors = "".join(
        f'[[sensors]]\ntype = "synthetic"\nname = "{name}"\ninterval_s = {SENSOR_INTERVAL_S}\n'
        for name in ("wave", "temperature")
    )
    text = (
        f'device_id = "{device_id}"\nlog_interval_s = 1\n{link}'
        "[batch]\nmax_readings = 25\ninterval_s = 0.2\n"
        "[reconnect]\ninitial_s = 0.2\nmax_s = 1.0\n"
        f'[spool]\npath = "spool.db"\n{sensors}'
    )
    path = directory / "device.toml"
    path.write_text(text)
    return path


class AgentProcess:
    """``python -m device_client run`` as a child process, its log in a file."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log_path = config.parent / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def spool_path(self) -> Path:
        """Where the config puts the spool (next to the config file)."""
        return self.config.parent / "spool.db"

    def start(self) -> AgentProcess:
        """Start the agent (appending to its log, so that a restart keeps the history)."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "device_client", "run", "--config", str(self.config)],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        return self

    def status(self) -> SpoolStatus:
        """The spool's status, read-only (safe beside the running agent)."""
        return read_status(self.spool_path)

    def kill(self) -> None:
        """``kill -9``: no goodbye, no last commit."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> int:
        """SIGTERM and wait; return the exit status (0 for a clean stop)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise

    def log(self) -> str:
        """The agent's log so far, for assertions and failure messages."""
        return self.log_path.read_text(errors="replace")


async def _until(predicate: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    await wait_for(predicate, timeout_s=timeout_s, what=what)


def _device_seqs(db_url: str, device_id: str) -> tuple[int | None, int]:
    rows = query(db_url, "SELECT last_seq, seq_gaps FROM devices WHERE device_id = %s", [device_id])
    return rows[0][0], rows[0][1]


def _rows_at_least(db_url: str, rows: int) -> Callable[[], bool]:
    return lambda: count_readings(db_url) >= rows


def _seq_at_least(db_url: str, device_id: str, seq: int) -> Callable[[], bool]:
    return lambda: (_device_seqs(db_url, device_id)[0] or 0) >= seq


def _caught_up(db_url: str, device_id: str, agent: AgentProcess) -> Callable[[], bool]:
    """The agent has no backlog left: the ingest lags by a batch or two, every seq up to the
    last stored one is stored, the spool holds no more than the batches in flight (so the
    receipts flow again: a worker whose receipt connection is still reconnecting after a
    broker restart skips them, and the agent resends after its timeout), and no error came
    in the last 1.5 s (so the forwarder is not waiting out a 429 or a backoff).

    Stopping earlier would leave readings in the spool, because the agent does not retry
    on its way out while backing off: correct (they go on the next start), but not what
    these tests check.
    """

    def check() -> bool:
        status = agent.status()
        last_seq = _device_seqs(db_url, device_id)[0] or 0
        if last_seq < status.next_seq - 31:
            return False
        if count_readings(db_url) < last_seq * METRICS_PER_SET:
            return False  # a batch before the last one is still on its way (sent again)
        if status.depth_rows > _STEADY_DEPTH_ROWS:
            return False  # stored, but receipts still missing (a worker reconnecting)
        if status.last_error_at is None:
            return True
        at = datetime.fromisoformat(status.last_error_at)
        return datetime.now(UTC) - at > timedelta(seconds=1.5)

    return check


async def _check_exactly_once(
    agent: AgentProcess, exit_code: int, db_url: str, device_id: str, *, reordered: bool = False
) -> int:
    """After a clean stop: check every numbered reading-set is stored once. Return N.

    ``reordered``: a backlog was drained by two workers (or batches the broker lost were
    sent again later), so a later batch of seqs could commit before an earlier one, which
    ``seq_gaps`` counts as a gap it does not take back (docs/wire-protocol.md, ``seq``).
    """
    assert exit_code == 0, agent.log()[-3000:]
    log = agent.log()
    assert "Traceback" not in log
    status = agent.status()
    produced = status.next_seq - 1
    # Nothing left behind: every reading-set the agent numbered was acknowledged.
    assert status.depth_rows == 0, status
    assert status.counters["dropped_total"] == 0
    assert status.counters["rejected_total"] == 0
    assert status.counters["spooled_total"] == produced
    expected_rows = produced * METRICS_PER_SET
    # An acknowledgement from the broker precedes the ingest's commit: wait for it.
    await _until(lambda: count_readings(db_url) >= expected_rows, f"{expected_rows} rows")
    await _until(lambda: _device_seqs(db_url, device_id)[0] == produced, f"last_seq {produced}", 10)
    # Exactly once: the right number of rows, one timestamp per reading-set, each with
    # both metrics, and the ingest saw seqs 1..N without a gap.
    assert count_readings(db_url) == expected_rows
    (distinct_times, per_time), *_ = query(
        db_url,
        "SELECT count(DISTINCT time), min(n) FROM"
        " (SELECT time, count(*) AS n FROM readings GROUP BY time) AS t",
    )
    assert (distinct_times, per_time) == (produced, METRICS_PER_SET)
    last_seq, gaps = _device_seqs(db_url, device_id)
    assert (last_seq, gaps if not reordered else 0) == (produced, 0), log[-3000:]
    return produced


@pytest.mark.parametrize("share_group", ["", "ingest"], ids=["default", "shared"])
async def test_mqtt_broker_restart_every_reading_once(
    db_url: str,
    mosquitto: MosquittoServer | None,
    ingest_factory: Callable[..., ServiceProcess],
    tcp_proxy: Callable[[str, int], TcpProxy],
    tmp_path: Path,
    share_group: str,
) -> None:
    """Broker restart, the agent back before the ingest: every reading stored once.

    Both reach the broker through proxies; after the restart the agent's is restored
    first, and the ingest's only once the broker has the agent's backlog. With the default
    plain subscription the broker queues it for the ingest. With a shared subscription
    Mosquitto 2.0 routes it to nobody (and has acknowledged it): the agent, holding its
    rows until their receipts, sends them again.
    """
    if mosquitto is None:
        pytest.skip("TEST_MQTT_URL names an external broker that this test cannot restart")
    device = "dc-mqtt-1"
    await new_device(db_url, device)
    ingest_link = tcp_proxy("127.0.0.1", mosquitto.port)
    # The ingest's session outlives the outage, so what the broker holds for it survives.
    ingest = ingest_factory(
        workers=2,
        broker_url=f"mqtt://127.0.0.1:{ingest_link.port}",
        mqtt_session_expiry_s="600",
        mqtt_share_group=share_group,
    )
    proxy = tcp_proxy("127.0.0.1", mosquitto.port)
    config = write_config(tmp_path, device, mqtt_url=f"mqtt://127.0.0.1:{proxy.port}")
    agent = AgentProcess(config).start()
    try:
        await _until(lambda: count_readings(db_url) >= 100, "readings before the outage")
        proxy.stop()
        ingest_link.stop()
        mosquitto.stop()  # with a window of messages in flight, some unacknowledged
        await asyncio.sleep(OUTAGE_S)  # the agent keeps sampling into its spool meanwhile
        assert agent.status().depth_rows > 0
        mosquitto.start()
        with TestClient(mosquitto.url) as watcher:
            watcher.subscribe(f"telemetry/{device}")
            proxy.start()
            watcher.receive(5, timeout_s=30)  # the broker has the agent's backlog
        ingest_link.start()
        ingest.wait_ready()
        await _until(_caught_up(db_url, device, agent), "the backlog after the restart", 60)
        exit_code = agent.stop()
    finally:
        agent.stop()  # a no-op unless the test failed before the clean stop
    # Two workers drain the backlog after the restart.
    produced = await _check_exactly_once(agent, exit_code, db_url, device, reordered=True)
    assert produced > (OUTAGE_S / SENSOR_INTERVAL_S)
    assert "connection to" in agent.log()  # the outage was seen, not slept through
    if share_group:
        assert "sending it again" in agent.log()  # the broker's loss, made good by receipts


async def test_http_cut_and_rate_limit_every_reading_once(
    db_url: str,
    storage_mode: str,
    ingest_factory: Callable[..., ServiceProcess],
    tcp_proxy: Callable[[str, int], TcpProxy],
    tmp_path: Path,
) -> None:
    device = "dc-http-1"
    token = await new_device(db_url, device)
    # Steady state is about 5 requests/s (a batch per 0.2 s): that fits; the replay of the
    # backlog after the cut (8 or more full batches at once) runs into 429s.
    ingest = ingest_factory(http_rate_per_device="10", http_burst_per_device="3")
    proxy = tcp_proxy("127.0.0.1", ingest.port)
    config = write_config(tmp_path, device, http_url=f"http://127.0.0.1:{proxy.port}", token=token)
    agent = AgentProcess(config).start()
    try:
        await _until(lambda: count_readings(db_url) >= 100, "readings before the cut")
        proxy.stop()
        await asyncio.sleep(OUTAGE_S)
        assert agent.status().depth_rows > 0
        proxy.start()
        await _until(_caught_up(db_url, device, agent), "the backlog after the cut")
        exit_code = agent.stop()
    finally:
        agent.stop()  # a no-op unless the test failed before the clean stop
    await _check_exactly_once(agent, exit_code, db_url, device)
    log = agent.log()
    assert "failed" in log  # the cut was seen: connection refused or reset
    assert ": 429, retry after" in log  # and the replay was paced by the rate limit


async def test_kill_9_and_restart_seq_continues(
    db_url: str,
    storage_mode: str,
    mqtt_url: str,
    ingest_factory: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    device = "dc-kill-1"
    await new_device(db_url, device)
    ingest_factory()
    agent = AgentProcess(write_config(tmp_path, device, mqtt_url=mqtt_url)).start()
    try:
        for round_ in range(2):
            await _until(
                _rows_at_least(db_url, count_readings(db_url) + 60),
                f"readings before kill {round_}",
            )
            # Kill with readings sampled and not yet acknowledged, some of them in flight.
            await _until(lambda: agent.status().depth_rows > 0, "readings in the spool")
            agent.kill()
            after_kill = agent.status()  # readable and consistent after kill -9
            agent.start()
            # The restarted agent resumes the numbering where the spool left it.
            await _until(
                _seq_at_least(db_url, device, after_kill.next_seq + 10),
                f"new seqs after restart {round_}",
            )
        await _until(_caught_up(db_url, device, agent), "the backlog after the restarts")
        exit_code = agent.stop()
    finally:
        agent.stop()  # a no-op unless the test failed before the clean stop
    await _check_exactly_once(agent, exit_code, db_url, device)
