"""The demo's live one-line summary: the fleet's status from the API, counters from the ingest."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import aiohttp

__all__ = ["Summary", "metric_sum"]


def metric_sum(text: str, name: str) -> float:
    """Sum every sample of counter ``name`` in a Prometheus exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class Summary:
    """Formats the summary line; remembers the last count to give a rate."""

    api_url: str
    ingest_url: str
    started: float
    last_accepted: float = 0.0
    last_at: float = field(init=False)

    def __post_init__(self) -> None:
        self.last_at = self.started

    async def line(self, session: aiohttp.ClientSession, headers: dict[str, str]) -> str:
        """Fetch ``/v1/fleet`` and the ingest's ``/metrics`` and format one line."""
        now = time.monotonic()
        try:
            async with session.get(f"{self.api_url}/v1/fleet", headers=headers) as resp:
                fleet = await resp.json() if resp.status == 200 else None
            async with session.get(f"{self.ingest_url}/metrics") as resp:
                metrics = await resp.text()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return f"[{now - self.started:6.0f} s] status unavailable: {exc or type(exc).__name__}"
        accepted = metric_sum(metrics, "ingest_readings_accepted_total")
        rejects = metric_sum(metrics, "ingest_items_rejected_total")
        rate = (accepted - self.last_accepted) / max(now - self.last_at, 1e-3)
        self.last_accepted, self.last_at = accepted, now
        devices = (
            "devices ?"
            if fleet is None
            else (f"devices {fleet['devices']['online']}/{fleet['devices']['total']} online")
        )
        hour = "" if fleet is None else f", {fleet['readings_last_hour']:,} in the last hour"
        return (
            f"[{now - self.started:6.0f} s] {devices} | {rate:,.0f} readings/s,"
            f" {accepted:,.0f} stored this run{hour} | rejects {rejects:,.0f}"
        )
