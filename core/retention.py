"""Retention per storage tier: raw readings and the 1-minute, 1-hour and 1-day rollups.

The ingest applies it (partitions, deletes, TimescaleDB policies); the query API reads it
from ``storage_settings`` to know which tier still holds a range. A coarser tier is kept at
least as long as a finer one: rollups may outlive raw data, never the other way round,
so the finest tier that holds a time is found by walking from raw to 1d.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

__all__ = ["TIERS", "Retention", "Tier"]

Tier = Literal["raw", "1m", "1h", "1d"]
#: From the finest to the coarsest.
TIERS: tuple[Tier, ...] = ("raw", "1m", "1h", "1d")


@dataclass(frozen=True)
class Retention:
    """Days each tier is kept; each at least as long as the tier before it."""

    raw_days: int
    rollup_1m_days: int
    rollup_1h_days: int
    rollup_1d_days: int

    def __post_init__(self) -> None:
        for finer, coarser in itertools.pairwise(TIERS):
            if self.days(coarser) < self.days(finer):
                raise ValueError(
                    f"the {coarser} tier ({self.days(coarser)} days) must be kept at least as"
                    f" long as the {finer} tier ({self.days(finer)} days): it is made from it"
                )

    def days(self, tier: Tier) -> int:
        """Days ``tier`` is kept."""
        return {
            "raw": self.raw_days,
            "1m": self.rollup_1m_days,
            "1h": self.rollup_1h_days,
            "1d": self.rollup_1d_days,
        }[tier]

    def horizon(self, tier: Tier, now: datetime) -> datetime:
        """Return the oldest time that ``tier`` surely still holds at ``now``."""
        return now - timedelta(days=self.days(tier))

    def as_settings(self) -> dict[str, str]:
        """Return the ``storage_settings`` rows that record this retention."""
        return {f"retention_{tier}_days": str(self.days(tier)) for tier in TIERS}

    @classmethod
    def from_settings(cls, rows: Mapping[str, str]) -> Retention | None:
        """Read what :meth:`as_settings` wrote; None where a migrate has not written it."""
        try:
            days = [int(rows[f"retention_{tier}_days"]) for tier in TIERS]
        except (KeyError, ValueError):
            return None
        return cls(*days)
