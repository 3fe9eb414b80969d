"""The real device agent in the fault suite: offline for minutes, or with a spool too small.

The agent (``python -m device_client run``, two synthetic 50 Hz sensors, the configuration
of ``tests/e2e/test_device_client.py``) reaches the broker through a proxy the test cuts.
Its spool numbers every reading-set (``seq``) as it commits it, and counts those it drops
by its full-spool policy, so after a clean stop the agent's own counters and the database
can be reconciled exactly: generated = stored + dropped by policy.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from core.registry import create_device
from tests.e2e.test_device_client import METRICS_PER_SET, AgentProcess, write_config
from tests.faults.load import Figures
from tests.support.proxy import TcpProxy

_SPOOL_SECTION = '[spool]\npath = "spool.db"\n'
# How long the offline device stays cut from the broker (the other faults run meanwhile).
OFFLINE_S = float(os.environ.get("FAULTS_OFFLINE_S", "120"))


@dataclass
class AgentRun:
    """An agent, its proxy to the broker and its database."""

    device_id: str
    agent: AgentProcess
    proxy: TcpProxy
    db_url: str

    def rows(self) -> tuple[int, int, int]:
        """Rows stored for the device: all, distinct (metric, time), distinct times."""
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT (r.metric_key, r.time)), count(DISTINCT r.time)"
                " FROM readings r JOIN devices d USING (device_key) WHERE d.device_id = %s",
                [self.device_id],
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

    def last_seq(self) -> int:
        """The last seq the ingest recorded for the device (0 before any)."""
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT coalesce(last_seq, 0) FROM devices WHERE device_id = %s", [self.device_id]
            ).fetchone()
        return int(row[0]) if row else 0

    def caught_up(self) -> bool:
        """The ingest lags the agent by a batch or two, and no send failed in the last 1.5 s."""
        status = self.agent.status()
        if self.last_seq() < status.next_seq - 31:
            return False
        if status.last_error_at is None:
            return True
        at = datetime.fromisoformat(status.last_error_at)
        return datetime.now(UTC) - at > timedelta(seconds=1.5)

    async def wait(self, what: str, timeout_s: float = 60.0) -> None:
        """Wait until :meth:`caught_up` (``what`` names the wait in the failure)."""
        deadline = time.monotonic() + timeout_s
        while not await asyncio.to_thread(self.caught_up):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.agent.log()[-2000:]}")
            await asyncio.sleep(0.2)

    async def wait_rows(self, rows: int, timeout_s: float = 60.0) -> None:
        """Wait until at least ``rows`` rows of the device are stored."""
        deadline = time.monotonic() + timeout_s
        while (await asyncio.to_thread(self.rows))[0] < rows:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {rows} rows: {self.agent.log()[-2000:]}")
            await asyncio.sleep(0.2)

    async def stop_and_account(self, fault: str) -> Figures:
        """Stop the agent cleanly, wait for the ingest, and return the exact accounting."""
        assert self.agent.stop() == 0, self.agent.log()[-3000:]
        assert "Traceback" not in self.agent.log()
        status = self.agent.status()
        assert status.depth_rows == 0, status  # every numbered reading-set left the spool
        generated = status.next_seq - 1
        dropped = status.counters["dropped_total"]
        expected_rows = (generated - dropped) * METRICS_PER_SET
        deadline = time.monotonic() + 60
        while (await asyncio.to_thread(self.rows))[0] < expected_rows:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        rows, distinct, times = await asyncio.to_thread(self.rows)
        stored = distinct
        notes = [f"{times} reading-sets stored of {generated} generated"]
        # A reading-set dropped while it was in flight (sent, its receipt not yet back) may
        # have been stored all the same: missing is what counts, and dropping must cover it.
        missing = generated - times
        if missing < dropped:
            notes.append(
                f"{dropped - missing} of the {dropped} reading-sets dropped by the spool's policy"
                " had been sent before and were stored"
            )
        return Figures(
            fault=fault,
            sent=generated * METRICS_PER_SET,
            acknowledged=(status.counters["sent_total"]) * METRICS_PER_SET,
            stored=stored,
            lost=max(0, missing - dropped) * METRICS_PER_SET,
            duplicated=rows - distinct,
            rejected=status.counters["rejected_total"],
            rejected_expected=0,
            recovery_s=None,
            dropped_by_policy=dropped * METRICS_PER_SET,
            notes=notes,
        )


@dataclass
class OfflineDevice:
    """The agent whose broker link was cut when the module started, and when."""

    run: AgentRun
    cut_at: float  # time.monotonic()


async def start_agent(
    workdir: Path, db_url: str, broker_port: int, device_id: str, *, spool: str = ""
) -> AgentRun:
    """Register the device, start its proxy and the agent (``spool``: extra spool keys)."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await create_device(conn, device_id)
    return await asyncio.to_thread(_launch, workdir, db_url, broker_port, device_id, spool)


def _launch(workdir: Path, db_url: str, broker_port: int, device_id: str, spool: str) -> AgentRun:
    proxy = TcpProxy("127.0.0.1", broker_port)
    proxy.start()
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(workdir, device_id, mqtt_url=f"mqtt://127.0.0.1:{proxy.port}")
    if spool:
        text = config.read_text()
        assert _SPOOL_SECTION in text
        config.write_text(text.replace(_SPOOL_SECTION, f"{_SPOOL_SECTION}{spool}\n"))
    return AgentRun(device_id, AgentProcess(config).start(), proxy, db_url)
