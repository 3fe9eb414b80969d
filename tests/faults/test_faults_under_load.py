"""Faults under a steady load: every acknowledged reading stored exactly once afterwards.

One private platform (PostgreSQL, Mosquitto, API, ingest with two workers) serves the
whole module; a simulated fleet (MQTT and HTTP, some malformed and duplicated messages)
runs through each fault in turn. After each: every reading the fleet had acknowledged
is stored exactly once by (device, metric, time), the dead letters of the malformed items
are there with their reasons, and the services are ready again with no help. A real
device agent is cut from the broker for ``FAULTS_OFFLINE_S`` (two minutes) meanwhile,
and another runs with a spool too small for its outage. The figures of each fault go to
the table that ``FAULT_REPORT`` names (docs/reliability.md shows one).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.error
import urllib.request

import pytest

from simulator import Fleet, Ledger
from simulator.api_client import StoredRow
from tests.e2e.helpers import wait_for
from tests.e2e.test_device_client import SENSOR_INTERVAL_S
from tests.faults.agent import OFFLINE_S, OfflineDevice, start_agent
from tests.faults.load import DB_CUT_S, Figures, Phase, SteadyLoad, fill_window, wait_ready
from tests.faults.stack import Stack

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("offline_device")]

# A restart as a package upgrade makes it: the broker is away for a few seconds.
BROKER_DOWN_S = 3.0
# The ingest reconnects this much after the devices (its backoff reaches 5 s).
INGEST_LATE_S = 2.0


def _check_exactly_once(phase: Phase) -> None:
    """Nothing acknowledged lost, nothing stored twice, every expected dead letter there."""
    result, ledger = phase.result, phase.ledger
    assert ledger.messages_failed == 0, "the platform refused well-formed messages"
    assert ledger.readings_acked == ledger.readings_sent > 0
    assert result.lost == 0
    assert result.duplicates == 0
    assert result.unexpected == 0
    assert result.stored == ledger.readings_sent
    _check_rejects(phase)


def _check_rejects(phase: Phase) -> None:
    """Each injected malformed item has its dead letter, with the reason it must have.

    A message redelivered after its dead letter committed but before its acknowledgement
    reached the device (a worker killed, a broker gone) is dead-lettered again: more
    dead letters than injected are possible, fewer or other reasons are not.
    """
    expected = phase.expected_rejects
    assert set(phase.rejects) == set(expected)
    for reason, count in expected.items():
        assert phase.rejects[reason] >= count, (reason, dict(phase.rejects), dict(expected))


def _readyz(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def test_kill_9_of_an_ingest_worker(
    stack: Stack, steady_load: SteadyLoad, fault_table: list[Figures]
) -> None:
    ingest = stack.ingest
    assert ingest is not None

    async def kill_a_worker() -> float:
        victim = ingest.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        return await wait_ready(stack, gone=[victim])

    phase = await steady_load.run(kill_a_worker, duration_s=15)
    fault_table.append(phase.figures("kill -9 of one of 2 ingest workers"))
    _check_exactly_once(phase)
    assert len(ingest.worker_pids()) == 2


async def test_postgres_restart(
    stack: Stack, steady_load: SteadyLoad, fault_table: list[Figures]
) -> None:
    async def restart() -> float:
        # Immediate: the server stops as if it crashed, and recovers from its WAL.
        await asyncio.to_thread(stack.postgres.stop, "immediate")
        await asyncio.to_thread(stack.postgres.start)
        return await wait_ready(stack)

    phase = await steady_load.run(restart, duration_s=15)
    fault_table.append(phase.figures("PostgreSQL restart (immediate stop, start)"))
    _check_exactly_once(phase)


async def test_database_network_cut(
    stack: Stack, steady_load: SteadyLoad, fault_table: list[Figures]
) -> None:
    proxy, ingest = stack.db_proxy, stack.ingest
    assert proxy is not None
    assert ingest is not None
    during: list[int] = []

    async def cut() -> float:
        await asyncio.to_thread(proxy.stop)
        await asyncio.sleep(DB_CUT_S)
        during.append(await asyncio.to_thread(_readyz, ingest.url))
        proxy.start()
        return await wait_ready(stack)

    phase = await steady_load.run(cut, duration_s=DB_CUT_S + 10)
    fault_table.append(phase.figures(f"database network cut for {DB_CUT_S:g} s (proxy)"))
    _check_exactly_once(phase)
    assert during == [503]  # the cut was seen, and said so


class BrokerRestart:
    """Restart Mosquitto (SIGTERM, so it saves its persistence) while devices publish.

    The ingest reconnects ``INGEST_LATE_S`` after the fleet has, as a consumer still in
    its reconnect backoff would while a thousand devices race it. The window from the
    stop until the ingest is ready again is recorded.
    """

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.stop_ms = self.ready_ms = 0

    async def __call__(self) -> float:
        """Apply the fault; return the time from the ingest's link back to it being ready."""
        stack, proxy = self.stack, self.stack.mqtt_proxy
        assert proxy is not None
        self.stop_ms = time.time_ns() // 1_000_000
        await asyncio.to_thread(proxy.stop)
        await asyncio.to_thread(stack.broker.stop)
        await asyncio.sleep(BROKER_DOWN_S)
        log_size = stack.broker.log_file.stat().st_size
        await asyncio.to_thread(stack.broker.start)
        await self._fleet_connected(log_size)
        await asyncio.sleep(INGEST_LATE_S)
        proxy.start()
        recovery_s = await wait_ready(stack)
        self.ready_ms = time.time_ns() // 1_000_000
        return recovery_s

    async def _fleet_connected(self, log_offset: int) -> None:
        """Wait for the broker's log to show the simulator connected (after ``log_offset``)."""
        log = self.stack.broker.log_file
        deadline = time.monotonic() + 30
        while b" as sim-" not in (await asyncio.to_thread(log.read_bytes))[log_offset:]:
            if time.monotonic() > deadline:
                raise AssertionError("the fleet did not reconnect to the restarted broker")
            await asyncio.sleep(0.05)

    def lost_only_in_window(
        self, ledger: Ledger, fleet: Fleet, rows: list[StoredRow], _rejects: object = None
    ) -> bool:
        """Whether every missing acknowledged reading is an MQTT one of the window.

        The window opens a little before the stop: messages in flight then are published
        again once the devices have reconnected.
        """
        filled = fill_window(ledger, fleet, rows, self.stop_ms - 2_000, self.ready_ms + 2_000)
        return ledger.reconcile(filled).lost == 0


async def test_broker_restart_devices_without_receipts(
    stack: Stack, steady_load: SteadyLoad, fault_table: list[Figures]
) -> None:
    """The default set-up: one plain subscription, its messages shared out by worker 0.

    The fleet's MQTT devices count on the broker's PUBACK (no receipts), and the ingest
    comes back after the fleet: the broker keeps the plain subscription of the ingest's
    session across its restart and queues for it, so nothing is lost.
    """
    phase = await steady_load.run(BrokerRestart(stack), duration_s=15, receipts="off")
    fault_table.append(
        phase.figures(
            f"Mosquitto restart ({BROKER_DOWN_S:g} s down), default (plain subscription,"
            " 2 workers), devices without receipts"
        )
    )
    _check_exactly_once(phase)


async def test_broker_restart_devices_with_receipts(
    stack: Stack, steady_load: SteadyLoad, fault_table: list[Figures]
) -> None:
    """The default set-up, the fleet's MQTT devices counting on their commit receipts."""
    phase = await steady_load.run(BrokerRestart(stack), duration_s=15, receipts="on")
    fault_table.append(
        phase.figures(
            f"Mosquitto restart ({BROKER_DOWN_S:g} s down), default (plain subscription,"
            " 2 workers), devices with receipts"
        )
    )
    _check_exactly_once(phase)


async def test_broker_restart_shared_subscription_devices_without_receipts(
    stack: Stack, steady_load: SteadyLoad, fault_table: list[Figures]
) -> None:
    """A share group (as several hosts need): Mosquitto 2.0 drops what arrives meanwhile.

    Between the broker's restart and the ingest's re-subscription, what devices publish is
    acknowledged by the broker and routed to nobody. The loss is measured, not hoped away:
    every lost reading must be an MQTT reading of that window; HTTP and everything outside
    the window must be complete.
    """
    await asyncio.to_thread(stack.replace_ingest, workers=2, mqtt_share_group="ingest")
    restart = BrokerRestart(stack)
    phase = await steady_load.run(
        restart, duration_s=15, accept=restart.lost_only_in_window, receipts="off"
    )
    figures = phase.figures(
        f"Mosquitto restart ({BROKER_DOWN_S:g} s down), shared subscription, 2 workers,"
        " devices without receipts"
    )
    figures.notes.append(
        f"{phase.result.lost} readings lost: MQTT messages that the restarted broker"
        " acknowledged before the ingest had subscribed again (the fleet reconnected"
        f" first, the ingest {INGEST_LATE_S:g} s later); Mosquitto 2.0 does not restore"
        " a shared subscription"
    )
    fault_table.append(figures)
    result, ledger = phase.result, phase.ledger
    assert restart.lost_only_in_window(ledger, phase.fleet, phase.rows)
    assert result.lost > 0  # the broker's loss is real: if it were gone, say so in the docs
    assert result.duplicates == 0
    assert result.unexpected == 0
    assert result.stored + result.lost == ledger.readings_sent
    # A malformed message may be among those the broker dropped: no other reason, no more.
    assert set(phase.rejects) <= set(phase.expected_rejects)


async def test_broker_restart_shared_subscription_devices_with_receipts(
    stack: Stack, steady_load: SteadyLoad, fault_table: list[Figures]
) -> None:
    """The same loss at the broker; receipts make the devices send again: nothing is lost."""
    await asyncio.to_thread(stack.replace_ingest, workers=2, mqtt_share_group="ingest")
    phase = await steady_load.run(BrokerRestart(stack), duration_s=15, receipts="on")
    fault_table.append(
        phase.figures(
            f"Mosquitto restart ({BROKER_DOWN_S:g} s down), shared subscription, 2 workers,"
            " devices with receipts"
        )
    )
    _check_exactly_once(phase)
    # Back to the default for the faults that follow.
    await asyncio.to_thread(stack.replace_ingest, workers=2)


async def test_device_spool_full(stack: Stack, fault_table: list[Figures]) -> None:
    run = await start_agent(
        stack.workdir / "full-agent",
        stack.db_url,
        stack.broker.port,
        "dc-full",
        spool="max_rows = 40",
    )
    try:
        await run.wait_rows(100)
        run.proxy.stop()
        # At 50 Hz the spool of 40 fills in under a second, then drops the oldest.
        await wait_for(
            lambda: run.agent.status().counters["dropped_total"] > 0, what="the spool to overflow"
        )
        run.proxy.start()
        await run.wait("the backlog after the outage")
        figures = await run.stop_and_account("device spool full (40 reading-sets, drop_oldest)")
    finally:
        run.agent.stop()
        run.proxy.stop()
    fault_table.append(figures)
    assert figures.dropped_by_policy > 0
    assert figures.lost == 0
    assert figures.duplicated == 0
    # Every reading-set is stored or was dropped by the policy (some dropped in flight: both).
    assert figures.stored <= figures.sent <= figures.stored + figures.dropped_by_policy


async def test_device_offline_for_minutes(
    offline_device: OfflineDevice, fault_table: list[Figures]
) -> None:
    run = offline_device.run
    await asyncio.sleep(max(0.0, offline_device.cut_at + OFFLINE_S - time.monotonic()))
    offline_s = time.monotonic() - offline_device.cut_at
    backlog = run.agent.status().depth_rows
    assert backlog > OFFLINE_S / SENSOR_INTERVAL_S / 2  # it kept sampling into its spool
    restored = time.monotonic()
    run.proxy.start()
    await run.wait("the backlog of the offline device", 120)
    recovery_s = time.monotonic() - restored
    figures = await run.stop_and_account(f"device offline for {offline_s:.0f} s, then back")
    figures.recovery_s = round(recovery_s, 1)
    figures.notes.append(f"{backlog} reading-sets spooled while offline")
    fault_table.append(figures)
    assert figures.lost == 0
    assert figures.duplicated == 0
    assert figures.dropped_by_policy == 0
    assert figures.stored == figures.sent
