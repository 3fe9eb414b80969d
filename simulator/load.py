"""The load test: run the fleet, let the ingest settle, verify through the query API, report.

After the last send, the export of every device is read until each acknowledged reading is
there and the dead letters match the injected faults, or until ``settle_s`` has passed;
what is still missing then is lost. MQTT is acknowledged by the broker before the ingest
commits, so a few seconds of settling are normal.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from simulator.accounting import Ledger, Reconciliation
from simulator.api_client import QueryApi
from simulator.fleet import Fleet
from simulator.latency import LatencyProbe, percentile
from simulator.report import Report
from simulator.runner import Endpoints, RunConfig, run_fleet

__all__ = ["run_load", "verify"]

# Dead letters are filtered by the server's receive time: allow for clocks apart a little.
_CLOCK_MARGIN = timedelta(seconds=5)


async def verify(
    api: QueryApi, ledger: Ledger, since: datetime, settle_s: float
) -> tuple[Reconciliation, Counter[str], float]:
    """Read back until everything acknowledged is stored and rejects match, or time is up."""
    started = time.monotonic()
    pause_s = 1.0
    device_ids = list(ledger.devices)
    ours = set(device_ids)
    while True:
        first, last = ledger.first_ts_ms, ledger.last_ts_ms
        rows = []
        if first is not None and last is not None:
            rows = [row async for row in api.export(device_ids, first, last + 1)]
        result = ledger.reconcile(rows)
        rejects = Counter(r.reason for r in await api.rejects(since) if r.device_id in ours)
        waited = time.monotonic() - started
        if (result.lost == 0 and rejects == +ledger.expected_rejects) or waited > settle_s:
            return result, rejects, waited
        # Each round reads every reading back: wait longer as the backlog takes longer.
        await asyncio.sleep(min(pause_s, max(0.0, settle_s - waited) + 0.1))
        pause_s = min(pause_s * 2, 8.0)


async def run_load(
    config: RunConfig,
    endpoints: Endpoints,
    fleet_path: Path | None,
    *,
    settle_s: float = 60.0,
    status: TextIO | None = None,
) -> Report:
    """Drive the fleet at the target rate for the duration, then verify and report."""
    fleet = Fleet.load(fleet_path)
    ledger = Ledger()
    since = datetime.now(UTC) - _CLOCK_MARGIN
    async with QueryApi(endpoints.api_url, endpoints.api_key) as api:
        async with LatencyProbe(api) as probe:
            run = await run_fleet(
                config, endpoints, fleet, ledger, api=api, probe=probe, status=status
            )
        result, rejects, waited = await verify(api, ledger, since, settle_s)
    samples_ms = [s * 1000 for s in probe.samples_s]
    expected = +ledger.expected_rejects
    return Report(
        devices=config.devices,
        protocols=list(config.protocols),
        duration_s=config.duration_s or run.elapsed_s,
        target_rate=config.target_rate,
        elapsed_s=round(run.elapsed_s, 3),
        messages_sent=ledger.messages_sent,
        messages_acked=ledger.messages_acked,
        messages_refused=ledger.messages_failed,
        duplicate_sends=ledger.duplicate_sends,
        retries=ledger.retries,
        readings_sent=ledger.readings_sent,
        readings_acked=ledger.readings_acked,
        readings_stored=result.stored,
        duplicates_stored=result.duplicates,
        lost=result.lost,
        unexpected=result.unexpected,
        unacked_missing=result.missing_unacked,
        mistyped=result.mistyped,
        rejected=sum(rejects.values()),
        rejected_expected=sum(expected.values()),
        rejects_by_reason=dict(rejects),
        expected_by_reason=dict(expected),
        throughput_readings_s=round(ledger.readings_acked / max(run.elapsed_s, 1e-9), 1),
        latency_ms={
            name: None if (v := percentile(samples_ms, q)) is None else round(v, 1)
            for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
        },
        latency_samples=len(samples_ms),
        settle_s=round(waited, 3),
        faults=asdict(config.faults),
    )
