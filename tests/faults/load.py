"""A steady simulated load with one fault in the middle, and the accounting after it.

Each phase drives a fleet of its own (a simulator :class:`~simulator.Fleet`, half MQTT, half
HTTP, a few malformed and duplicated messages) at a fixed rate, applies the fault while
the load runs, and then reads everything back through the query API. The accounting is
the simulator's: :class:`~simulator.Ledger` knows every reading sent and acknowledged,
:meth:`~simulator.Ledger.reconcile` compares that with what the API exports.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from simulator import Endpoints, FaultConfig, Fleet, Ledger, Reconciliation, RunConfig, run_fleet
from simulator.api_client import QueryApi, StoredRow
from simulator.driver_mqtt import ReceiptMode
from simulator.profiles import profile_for
from tests.faults.stack import ADMIN_KEY, Stack

# How long the database network stays cut.
DB_CUT_S = float(os.environ.get("FAULTS_DB_CUT_S", "30"))


@dataclass(frozen=True)
class LoadSettings:
    """The steady load: small enough for two shared cores, large enough to see loss."""

    devices: int = 40
    rate: float = 60.0  # reading-sets per second across the fleet (about 250 readings/s)
    malformed_share: float = 0.02
    duplicate_share: float = 0.02


@dataclass
class Figures:
    """One row of the fault table: readings are rows (device, metric, time)."""

    fault: str
    sent: int
    acknowledged: int
    stored: int
    lost: int
    duplicated: int
    rejected: int
    rejected_expected: int
    recovery_s: float | None
    dropped_by_policy: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """The figures as a JSON-ready mapping."""
        return asdict(self)


@dataclass
class Phase:
    """What one phase of load sent, what the API shows stored, and the dead letters."""

    ledger: Ledger
    fleet: Fleet
    result: Reconciliation
    rows: list[StoredRow]
    rejects: Counter[str]
    recovery_s: float | None

    @property
    def expected_rejects(self) -> Counter[str]:
        """Dead letters the injected malformed items must have made, by reason."""
        return +self.ledger.expected_rejects

    def figures(self, fault: str) -> Figures:
        """The table row of this phase."""
        return Figures(
            fault=fault,
            sent=self.ledger.readings_sent,
            acknowledged=self.ledger.readings_acked,
            stored=self.result.stored,
            lost=self.result.lost,
            duplicated=self.result.duplicates,
            rejected=sum(self.rejects.values()),
            rejected_expected=sum(self.expected_rejects.values()),
            recovery_s=None if self.recovery_s is None else round(self.recovery_s, 1),
        )


Fault = Callable[[], Awaitable[float | None]]


def fill_window(
    ledger: Ledger, fleet: Fleet, rows: list[StoredRow], start_ms: int, end_ms: int
) -> list[StoredRow]:
    """``rows`` plus every MQTT reading sent with a time in ``[start_ms, end_ms]``.

    Reconciling these instead of ``rows`` counts as lost only what is missing outside
    that window: zero means every lost reading is an MQTT one of the window.
    """
    records = {r.device_id: r for r in fleet.devices}
    extra = [
        StoredRow(device_id, metric, ts_ms)
        for device_id, device in ledger.devices.items()
        if records[device_id].transport == "mqtt"
        for ts_ms in device.expected
        if start_ms <= ts_ms <= end_ms
        for metric in profile_for(records[device_id].profile).metrics
    ]
    return rows + extra


class SteadyLoad:
    """The load of the fault suite, run phase by phase against ``stack``."""

    def __init__(self, stack: Stack, workdir: Path, settings: LoadSettings) -> None:
        self.stack = stack
        self.settings = settings
        self.workdir = workdir
        self._phases = 0

    def _config(self, duration_s: float, receipts: ReceiptMode) -> RunConfig:
        return RunConfig(
            devices=self.settings.devices,
            rate=self.settings.rate,
            duration_s=duration_s,
            protocols=("mqtt", "http"),
            prefix=f"fault{self._phases}",
            seed=self._phases,
            drain_s=90.0,
            receipts=receipts,
            faults=FaultConfig(
                malformed_share=self.settings.malformed_share,
                duplicate_share=self.settings.duplicate_share,
            ),
        )

    async def run(
        self,
        fault: Fault,
        *,
        duration_s: float,
        fault_at_s: float = 4.0,
        accept: Callable[[Ledger, Fleet, list[StoredRow], Counter[str]], bool] | None = None,
        settle_s: float = 90.0,
        receipts: ReceiptMode = "on",
    ) -> Phase:
        """Run the load for ``duration_s``, apply ``fault`` after ``fault_at_s``, verify.

        ``fault`` returns its recovery time. ``accept`` says when the stored rows and dead
        letters are complete (default: nothing acknowledged is missing, every expected
        dead letter is there); the read-back is repeated until then or ``settle_s``.
        ``receipts`` off: the fleet's MQTT devices count a message as acknowledged on the
        broker's PUBACK, as a device that asks for no receipt does.
        """
        stack = self.stack
        assert stack.api is not None
        assert stack.ingest is not None
        # A fleet of its own per phase: late redeliveries of one phase (dead letters of a
        # message acknowledged too late) cannot blur the accounting of the next.
        self._phases += 1
        fleet = Fleet.load(self.workdir / f"fleet-{self._phases}.json")
        ledger = Ledger()
        since = datetime.now(UTC)  # the services run on this machine: one clock
        endpoints = Endpoints(stack.api.url, ADMIN_KEY, stack.ingest.url, stack.broker.url)
        async with QueryApi(stack.api.url, ADMIN_KEY) as api:
            running = asyncio.create_task(
                run_fleet(self._config(duration_s, receipts), endpoints, fleet, ledger, api=api),
                name="steady-load",
            )
            try:
                await _until(lambda: ledger.messages_acked > 0 or running.done(), 60)
                await asyncio.sleep(fault_at_s)
                recovery_s = await fault()
                outcome = await running
            finally:
                running.cancel()
            assert outcome.drained, "the fleet did not get its last acknowledgements"
            rows, rejects = await settle(
                api, ledger, since, partial(accept or _nothing_lost, ledger, fleet), settle_s
            )
        return Phase(ledger, fleet, ledger.reconcile(rows), rows, rejects, recovery_s)


def _nothing_lost(
    ledger: Ledger, _fleet: Fleet, rows: list[StoredRow], rejects: Counter[str]
) -> bool:
    """Everything acknowledged is stored and every expected dead letter is there."""
    expected = ledger.expected_rejects
    complete = all(rejects[reason] >= n for reason, n in expected.items())
    return complete and ledger.reconcile(rows).lost == 0


async def settle(
    api: QueryApi,
    ledger: Ledger,
    since: datetime,
    accept: Callable[[list[StoredRow], Counter[str]], bool],
    timeout_s: float,
) -> tuple[list[StoredRow], Counter[str]]:
    """Read rows and dead letters back until ``accept`` takes them, or time is up."""
    deadline = time.monotonic() + timeout_s
    ours = set(ledger.devices)
    while True:
        rows: list[StoredRow] = []
        if ledger.first_ts_ms is not None and ledger.last_ts_ms is not None:
            rows = [
                row
                async for row in api.export(list(ours), ledger.first_ts_ms, ledger.last_ts_ms + 1)
            ]
        rejects = Counter(r.reason for r in await api.rejects(since) if r.device_id in ours)
        if accept(rows, rejects) or time.monotonic() > deadline:
            return rows, rejects
        await asyncio.sleep(1.0)


async def _until(predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the load to start")
        await asyncio.sleep(0.05)


async def wait_ready(stack: Stack, *, gone: Iterable[int] = (), timeout_s: float = 90) -> float:
    """Wait until the ingest (every worker) and the API are ready; return the time taken.

    ``gone``: worker PIDs that must have been replaced first.
    """
    ingest, api = stack.ingest, stack.api
    assert ingest is not None
    assert api is not None
    started = time.monotonic()
    dead = set(gone)
    while dead & set(ingest.worker_pids()):
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"workers {dead} were not replaced: {ingest.log_tail()}")
        await asyncio.sleep(0.05)
    await asyncio.to_thread(ingest.wait_ready, max(1.0, timeout_s - (time.monotonic() - started)))
    while (await asyncio.to_thread(api.get, "/readyz"))[0] != 200:
        if time.monotonic() - started > timeout_s:
            raise AssertionError("the API is not ready again")
        await asyncio.sleep(0.1)
    return time.monotonic() - started
