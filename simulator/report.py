"""The load report: what was sent, acknowledged, stored and rejected, and how fast.

``passed`` holds when nothing acknowledged was lost, nothing was stored twice, nothing
unexpected was stored, and the dead letters match the injected faults reason by reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["Report"]


@dataclass(frozen=True)
class Report:
    """Figures of one load run (readings are rows: one metric of one device at one time)."""

    devices: int
    protocols: list[str]
    duration_s: float
    target_rate: float
    elapsed_s: float
    messages_sent: int
    messages_acked: int
    messages_refused: int
    duplicate_sends: int
    retries: int
    readings_sent: int
    readings_acked: int
    readings_stored: int
    duplicates_stored: int
    lost: int
    unexpected: int
    unacked_missing: int
    mistyped: int
    rejected: int
    rejected_expected: int
    rejects_by_reason: Mapping[str, int]
    expected_by_reason: Mapping[str, int]
    throughput_readings_s: float
    latency_ms: Mapping[str, float | None]
    latency_samples: int
    settle_s: float
    faults: Mapping[str, float | int] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        """Why the run failed, one sentence each (empty when it passed)."""
        out = []
        if self.lost:
            out.append(f"{self.lost} acknowledged readings are not stored")
        if self.duplicates_stored:
            out.append(f"{self.duplicates_stored} readings are stored more than once")
        if self.unexpected:
            out.append(f"{self.unexpected} stored readings were never sent for storing")
        if self.mistyped:
            out.append(f"{self.mistyped} stored readings came back as another type than sent")
        if dict(self.rejects_by_reason) != dict(self.expected_by_reason):
            out.append(
                f"dead letters {dict(sorted(self.rejects_by_reason.items()))} differ from the"
                f" injected faults {dict(sorted(self.expected_by_reason.items()))}"
            )
        if self.messages_refused:
            out.append(f"{self.messages_refused} messages were refused unexpectedly")
        return out

    @property
    def passed(self) -> bool:
        """Whether nothing was lost, duplicated or rejected unexpectedly."""
        return not self.problems

    def to_json(self) -> str:
        """Render the report as a JSON document."""
        doc = asdict(self) | {"passed": self.passed, "problems": self.problems}
        return json.dumps(doc, indent=2, sort_keys=True)

    def write_json(self, path: Path) -> None:
        """Write :meth:`to_json` to ``path``."""
        path.write_text(self.to_json() + "\n")

    def to_table(self) -> str:
        """Render the report as an aligned two-column table."""

        def ms(name: str) -> str:
            value = self.latency_ms.get(name)
            return "n/a" if value is None else f"{value:,.0f} ms"

        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.rejects_by_reason.items()))
        rows = [
            ("devices", f"{self.devices:,} ({', '.join(self.protocols)})"),
            ("duration", f"{self.duration_s:g} s at {self.target_rate:,.0f} reading-sets/s"),
            ("messages sent / acked", f"{self.messages_sent:,} / {self.messages_acked:,}"),
            ("duplicate sends, retries", f"{self.duplicate_sends:,}, {self.retries:,}"),
            ("readings sent", f"{self.readings_sent:,}"),
            ("readings acknowledged", f"{self.readings_acked:,}"),
            ("readings stored", f"{self.readings_stored:,}"),
            ("duplicates stored", f"{self.duplicates_stored:,} (must be 0)"),
            ("lost", f"{self.lost:,} (must be 0)"),
            ("of another type than sent", f"{self.mistyped:,} (must be 0)"),
            ("unacknowledged, not stored", f"{self.unacked_missing:,}"),
            (
                "rejected",
                f"{self.rejected:,} (injected {self.rejected_expected:,})"
                + (f": {reasons}" if reasons else ""),
            ),
            ("throughput", f"{self.throughput_readings_s:,.0f} readings/s"),
            (
                "latency p50 / p95 / p99",
                f"{ms('p50')} / {ms('p95')} / {ms('p99')} ({self.latency_samples} samples)",
            ),
            ("settled after", f"{self.settle_s:.1f} s"),
            ("result", "PASS" if self.passed else "FAIL: " + "; ".join(self.problems)),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
