"""Fault injection: what goes wrong, how often, and what the server must make of it.

Every fault is a share or a rate (see :class:`FaultConfig`). The injected damage is known
exactly, so the load report can hold the platform to it:

- duplicate sends: a share of messages is sent a second time, unchanged; nothing new is
  stored.
- late, out-of-order data: a share of reading-sets is held back for up to ``late_max_s``
  and sent after newer ones; all are stored.
- clock skew: a share of devices runs its clock off by up to ``skew_max_s`` either way.
  Readings more than the server's ``max_future_skew_s`` ahead are rejected as
  ``future_timestamp`` and counted as expected rejects; skews within 30 s of that limit
  are never drawn, so no reading sits on the edge.
- malformed payloads: a share of messages carries one malformed item, or is replaced by
  a malformed message of its own; each makes exactly one dead letter with a known reason.
- offline devices: a share of devices drops off for about ``offline_s`` now and then,
  keeps sampling, and sends the backlog in large batches on return.
- bursts: at ``burst_rate`` bursts a second across the fleet, a device sends
  ``burst_size`` extra reading-sets at once, one message each.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Literal

__all__ = ["FaultConfig", "Malformed", "draw_skew_s", "malformed"]

_SKEW_EDGE_S = 30.0

Encoding = Literal["json", "senml"]


@dataclass(frozen=True)
class FaultConfig:
    """How often each fault happens; all zero means a well-behaved fleet."""

    duplicate_share: float = 0.0
    malformed_share: float = 0.0
    late_share: float = 0.0
    late_max_s: float = 10.0
    skew_share: float = 0.0
    skew_max_s: float = 120.0
    offline_share: float = 0.0
    offline_s: float = 10.0
    burst_rate: float = 0.0
    burst_size: int = 20
    max_future_skew_s: float = 300.0

    def problems(self) -> list[str]:
        """Name every setting out of range (empty when all are fine)."""
        out = [
            f"{name} must be between 0 and 1, not {value:g}"
            for name, value in (
                ("duplicate_share", self.duplicate_share),
                ("malformed_share", self.malformed_share),
                ("late_share", self.late_share),
                ("skew_share", self.skew_share),
                ("offline_share", self.offline_share),
            )
            if not 0.0 <= value <= 1.0
        ]
        for name, value in (
            ("late_max_s", self.late_max_s),
            ("skew_max_s", self.skew_max_s),
            ("offline_s", self.offline_s),
            ("burst_rate", self.burst_rate),
            ("max_future_skew_s", self.max_future_skew_s),
        ):
            if value < 0:
                out.append(f"{name} must not be negative, not {value:g}")
        if self.burst_size < 1:
            out.append(f"burst_size must be at least 1, not {self.burst_size}")
        return out


def draw_skew_s(rng: random.Random, config: FaultConfig) -> float:
    """Draw a device's clock offset in seconds (0 for most devices)."""
    if config.skew_max_s <= 0 or rng.random() >= config.skew_share:
        return 0.0
    while True:
        skew = rng.uniform(-config.skew_max_s, config.skew_max_s)
        if abs(skew - config.max_future_skew_s) > _SKEW_EDGE_S:
            return skew


@dataclass(frozen=True)
class Malformed:
    """A malformed item to add to a message, or (``whole``) a message of its own."""

    kind: str
    reason: str
    text: str
    whole: bool = False


#: A string over the 256-byte limit of a value.
_LONG = "x" * 300


def malformed(rng: random.Random, encoding: Encoding, ts_s: float) -> Malformed:
    """Draw one malformed item or message for ``encoding``, with the reject it must cause."""
    if encoding == "senml":
        choices = [
            Malformed("sum_only", "unsupported_value", json.dumps({"n": "total", "s": 10})),
            Malformed("long_string", "too_long", json.dumps({"n": "label", "vs": _LONG})),
            Malformed("no_value", "schema", json.dumps({"n": "empty"})),
            Malformed("truncated", "malformed_json", '[{"bn": "x/", "n": "t", "v": ', whole=True),
        ]
    else:
        ts = round(ts_s, 3)
        choices = [
            Malformed("empty_values", "schema", json.dumps({"ts": ts, "values": {}})),
            Malformed("null_value", "schema", json.dumps({"ts": ts, "values": {"t": None}})),
            Malformed("long_string", "too_long", json.dumps({"ts": ts, "values": {"t": _LONG}})),
            Malformed("bad_name", "invalid_name", json.dumps({"ts": ts, "values": {"9t": 1}})),
            Malformed("truncated", "malformed_json", '[{"ts": 1795255200, "values": {', whole=True),
        ]
    return rng.choice(choices)
