"""Fixtures of the fault suite: a private platform, the steady load, the fault table.

``FAULT_REPORT=path.md`` writes the table (and ``path.json`` beside it) when the module
ends; ``FAULTS_OFFLINE_S`` (120) and ``FAULTS_DB_CUT_S`` (30) set the two long outages.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.agent import OfflineDevice, start_agent
from tests.faults.load import Figures, LoadSettings, SteadyLoad
from tests.faults.stack import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """PostgreSQL, Mosquitto, API and ingest (2 workers) of this module only."""
    with Stack(tmp_path_factory.mktemp("faults"), workers=2) as running:
        yield running


@pytest.fixture(scope="module")
def steady_load(stack: Stack) -> SteadyLoad:
    """The fleet that every fault runs under."""
    return SteadyLoad(stack, stack.workdir, LoadSettings())


@pytest.fixture(scope="module")
def fault_table() -> Iterator[list[Figures]]:
    """Rows of the fault table; written to ``FAULT_REPORT`` at the end of the module."""
    rows: list[Figures] = []
    yield rows
    target = os.environ.get("FAULT_REPORT")
    if target and rows:
        write_report(Path(target), rows)


@pytest.fixture(scope="module")
def offline_device(stack: Stack) -> Iterator[OfflineDevice]:
    """A real agent, cut from the broker once it has delivered, for the whole module."""
    run = asyncio.run(
        start_agent(stack.workdir / "offline-agent", stack.db_url, stack.broker.port, "dc-offline")
    )
    try:
        asyncio.run(run.wait_rows(100))
        run.proxy.stop()
        yield OfflineDevice(run, time.monotonic())
    finally:
        run.agent.stop()
        run.proxy.stop()


def write_report(path: Path, rows: list[Figures]) -> None:
    """Write the fault table as Markdown to ``path`` and as JSON beside it."""
    lines = [
        (
            "| fault | readings sent | stored | lost | duplicated | rejected (expected)"
            " | dropped by policy | recovery |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        recovery = "" if row.recovery_s is None else f"{row.recovery_s:.1f} s"
        lines.append(
            f"| {row.fault} | {row.sent:,} | {row.stored:,} | {row.lost:,} | {row.duplicated:,}"
            f" | {row.rejected:,} ({row.rejected_expected:,}) | {row.dropped_by_policy:,}"
            f" | {recovery} |"
        )
    notes = [f"- {row.fault}: {note}" for row in rows for note in row.notes]
    path.write_text("\n".join([*lines, "", *notes]) + "\n")
    doc = [row.as_dict() for row in rows]
    path.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
