"""What MQTT and HTTP intake share: turning a parsed message into a pipeline submission.

Accepted items become reading-sets; every rejected item, and a message rejected whole,
becomes a dead letter with its reason, detail and raw payload (the item's own JSON where
it can be cut out, else the whole message), committed in the same batch as the readings.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from ingest.metrics import METRICS
from ingest.pipeline import Submission
from ingest.wire import Parsed, Reason, Reject
from ingest.writer import DeadLetter

__all__ = ["IntakeRules", "add_items", "add_reject", "log_rejects"]

log = logging.getLogger(__name__)

Source = Literal["mqtt", "http"]


@dataclass(frozen=True, slots=True)
class IntakeRules:
    """Checks that need server state rather than the message alone."""

    retention: timedelta


def _item_payloads(body: bytes, indexes: Sequence[int]) -> dict[int, bytes]:
    """Cut the JSON of the rejected items out of the message, where it parses."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    if isinstance(doc, dict):
        return dict.fromkeys(indexes, body)
    if not isinstance(doc, list):
        return {}
    return {
        i: json.dumps(doc[i], separators=(",", ":")).encode() for i in indexes if 0 <= i < len(doc)
    }


def dead_letters_for(
    rejects: Sequence[Reject],
    body: bytes,
    *,
    source: Source,
    device_id: str | None,
    received_at: datetime,
) -> list[DeadLetter]:
    """One dead letter per reject, counted in the metrics."""
    payloads = _item_payloads(body, [r.index for r in rejects if r.index >= 0]) if rejects else {}
    letters = []
    for reject in rejects:
        METRICS.rejected.labels(source, reject.reason.value).inc()
        letters.append(
            DeadLetter(
                source=source,
                reason=reject.reason.value,
                detail=reject.detail,
                payload=payloads.get(reject.index, body),
                device_id=device_id,
                item_index=reject.index if reject.index >= 0 else None,
                received_at=received_at,
            )
        )
    return letters


def add_reject(
    sub: Submission,
    reason: Reason,
    detail: str,
    body: bytes,
    *,
    source: Source,
    device_id: str | None,
) -> None:
    """Add the dead letter of a message rejected whole to ``sub``."""
    sub.dead_letters += dead_letters_for(
        [Reject(-1, reason, detail)],
        body,
        source=source,
        device_id=device_id,
        received_at=sub.received_at,
    )


def add_items(
    sub: Submission,
    parsed: Parsed,
    body: bytes,
    *,
    device_key: int,
    device_id: str,
    source: Source,
    rules: IntakeRules,
) -> list[Reject]:
    """Add a parsed message's readings and dead letters to ``sub``; return its rejects."""
    oldest = sub.received_at - rules.retention
    rejects = list(parsed.rejects)
    from_parser = len(rejects)
    sets, seqs, newest = sub.sets, sub.devices.setdefault(device_key, []), sub.newest_ts
    for item in parsed.items:  # one pass: this runs for every reading-set received
        ts = item.ts
        if ts < oldest:
            detail = f"ts is older than the retention of {rules.retention.days} days"
            rejects.append(Reject(item.index, Reason.TOO_OLD, detail))
            continue
        sets.append((device_key, ts, item.values))
        if item.seq is not None:
            seqs.append(item.seq)
        if newest is None or ts > newest:
            newest = ts
    sub.newest_ts = newest
    if len(rejects) > from_parser:
        rejects.sort(key=lambda r: r.index)
    if rejects:
        sub.dead_letters += dead_letters_for(
            rejects, body, source=source, device_id=device_id, received_at=sub.received_at
        )
    return rejects


def log_rejects(source: Source, device_id: str, rejects: Sequence[Reject], total: int) -> None:
    """Log one line per message that had rejects: counts by reason and the first detail."""
    if not rejects:
        return
    by_reason = Counter(r.reason.value for r in rejects)
    first = rejects[0]
    log.info(
        "device %s (%s): %d of %d items rejected (%s); first, item %d: %s",
        device_id,
        source,
        len(rejects),
        total,
        ", ".join(f"{reason} x{n}" for reason, n in by_reason.most_common()),
        first.index,
        first.detail,
    )
