"""The live status line on stderr, rewritten about once a second while a run goes on."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Self, TextIO

from simulator.accounting import Ledger

__all__ = ["Progress", "status_line"]


def status_line(ledger: Ledger, elapsed_s: float, duration_s: float | None) -> str:
    """Format one status line from the ledger's counters."""
    total = f"/{duration_s:.0f}" if duration_s else ""
    rate = ledger.readings_acked / elapsed_s if elapsed_s > 0 else 0.0
    in_flight = ledger.messages_sent - ledger.messages_acked - ledger.messages_failed
    return (
        f"[{elapsed_s:5.0f}{total} s] messages {ledger.messages_sent:,} sent,"
        f" {ledger.messages_acked:,} acked, {in_flight:,} in flight;"
        f" readings {ledger.readings_acked:,} acked ({rate:,.0f}/s);"
        f" retries {ledger.retries:,}, refused {ledger.messages_failed:,}"
    )


class Progress:
    """Writes :func:`status_line` to ``stream`` every ``interval_s`` inside its context."""

    def __init__(
        self,
        ledger: Ledger,
        stream: TextIO | None,
        duration_s: float | None,
        interval_s: float = 1.0,
    ) -> None:
        self.ledger = ledger
        self.stream = stream
        self.duration_s = duration_s
        self.interval_s = interval_s
        self._started = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def _write(self, *, final: bool = False) -> None:
        if self.stream is None:
            return
        line = status_line(self.ledger, time.monotonic() - self._started, self.duration_s)
        if self.stream.isatty():
            self.stream.write(f"\r\x1b[K{line}" + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self._write()

    async def __aenter__(self) -> Self:
        self._started = time.monotonic()
        self._task = asyncio.create_task(self._loop(), name="progress")
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._write(final=True)
