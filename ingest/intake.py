"""The accept step every protocol shares: a received message into a pipeline submission.

MQTT (:mod:`ingest.mqtt_intake`) and HTTP (:mod:`ingest.http`) both call :func:`accept`
once the device is known, and :func:`refuse` for a message rejected before its payload is
read. :class:`Intake` is what they share: the pipeline, the device directory and the rules.

Accepted items become reading-sets of the :class:`~ingest.pipeline.Submission` (numbers)
and typed sets (booleans and strings); every rejected item, and a message rejected whole,
becomes a dead letter with its reason, detail and raw payload (the item's own JSON where it
can be cut out, else the whole message), committed in the same batch as the readings.

Besides what the parser checks, an item is rejected here when it is older than the
retention (``too_old``), when it names a new metric while the metric dictionary is full
(``too_many_metrics``), when a gateway names a device that is not its child
(``not_a_child``), when a value is not of its metric's type (``type_mismatch``) or a unit
is not the device's unit of the metric (``unit_mismatch``), in that order. Items of
numbers only, of the sender itself and for metrics known to hold numbers, take a short
path that needs nothing but the cache.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.registry import DeviceRef
from ingest.catalog import Catalog
from ingest.checks import check_items
from ingest.devices import DeviceDirectory
from ingest.metric_keys import MetricKeys
from ingest.metrics import METRICS
from ingest.pipeline import Pipeline, Submission
from ingest.records import DeadLetter, Source
from ingest.wire import Format, Item, Limits, Reason, Reject, parse_payload

__all__ = ["Intake", "IntakeRules", "Verdict", "accept", "answer", "refuse"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :func:`accept` made of one message.

    ``whole`` is the reject of a message refused as a whole (nothing of it is stored but its
    dead letter); ``rejects`` are those of single items; ``total`` counts its items.
    """

    whole: Reject | None
    rejects: list[Reject]
    total: int


@dataclass(frozen=True, slots=True)
class IntakeRules:
    """What the accept step checks a message against, besides the message itself."""

    limits: Limits
    retention: timedelta
    #: The writer's metric dictionary: once full, items with new names are refused.
    metrics: MetricKeys | None = None


@dataclass(frozen=True, slots=True)
class Intake:
    """What a worker's MQTT and HTTP intake share; built once per process, never changed."""

    pipeline: Pipeline
    devices: DeviceDirectory
    catalog: Catalog
    rules: IntakeRules


async def accept(
    sub: Submission,
    body: bytes,
    fmt: Format,
    device: DeviceRef,
    *,
    source: Source,
    intake: Intake,
) -> Verdict:
    """Parse ``body`` of ``device`` and add its readings and dead letters to ``sub``."""
    parsed = parse_payload(
        body, fmt, device.device_id, sub.received_at, intake.rules.limits, gateway=device.gateway
    )
    if parsed.rejects:
        whole = next((reject for reject in parsed.rejects if reject.index < 0), None)
        if whole is not None:
            refuse(sub, whole.reason, whole.detail, body, source=source, device_id=device.device_id)
            return Verdict(whole, [], parsed.total)
    rejects = list(parsed.rejects)
    from_parser = len(rejects)
    other = _add_numbers(sub, parsed.items, device, intake, rejects)
    if other:
        for checked in await check_items(other, device, intake.devices, intake.catalog):
            if isinstance(checked, Reject):
                rejects.append(checked)
            else:
                item = checked.item
                sub.add(checked.device_key, item.ts, item.seq, item.values, item.typed)
    if rejects:
        if len(rejects) > from_parser:
            rejects.sort(key=lambda r: r.index)
        sub.dead_letters += _dead_letters(rejects, body, source, device.device_id, sub.received_at)
        _log_rejects(source, device.device_id, rejects, parsed.total)
    return Verdict(None, rejects, parsed.total)


def _add_numbers(
    sub: Submission, items: list[Item], device: DeviceRef, intake: Intake, rejects: list[Reject]
) -> list[Item]:
    """Add the items of known numeric metrics of ``device`` itself; return the others.

    Items older than the retention are rejected here (``too_old``) whatever they hold.
    """
    rules = intake.rules
    retention = rules.retention
    oldest = sub.received_at - retention
    known = rules.metrics.known if rules.metrics is not None and rules.metrics.full else None
    sets, newest = sub.sets, sub.newest_ts
    device_key = device.device_key
    seqs = sub.devices.setdefault(device_key, [])
    numbers = intake.catalog.numbers
    other: list[Item] = []
    for item in items:  # one pass: this runs for every reading-set received
        ts = item.ts
        if ts < oldest:
            detail = f"ts is older than the retention of {retention.days} days"
            rejects.append(Reject(item.index, Reason.TOO_OLD, detail))
            continue
        if known is not None:
            names = item.values.keys() | (item.typed or {}).keys()
            if not known.keys() >= names:
                new = ", ".join(sorted(names - known.keys()))
                detail = f"no room for new metrics ({new}): the metric dictionary is full"
                rejects.append(Reject(item.index, Reason.TOO_MANY_METRICS, detail))
                continue
        if (
            item.typed is not None
            or item.units is not None
            or item.device_id is not None
            or not numbers.issuperset(item.values)
        ):
            other.append(item)
            continue
        sets.append((device_key, ts, item.values))
        if item.seq is not None:
            seqs.append(item.seq)
        if newest is None or ts > newest:
            newest = ts
    sub.newest_ts = newest
    return other


def refuse(
    sub: Submission,
    reason: Reason,
    detail: str,
    body: bytes,
    *,
    source: Source,
    device_id: str | None,
) -> None:
    """Refuse a whole message: log it and add its dead letter to ``sub``."""
    log.info("device %s (%s): message rejected (%s): %s", device_id or "?", source, reason, detail)
    sub.dead_letters += _dead_letters(
        [Reject(-1, reason, detail)], body, source, device_id, sub.received_at
    )


def answer(accepted: int, duplicates: int, rejects: Sequence[Reject]) -> dict[str, object]:
    """Build what a device is told once its message has committed (HTTP 200, MQTT receipt)."""
    return {
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": [
            {"index": r.index, "reason": r.reason.value, "detail": r.detail} for r in rejects
        ],
    }


def _item_payloads(body: bytes, indexes: Sequence[int]) -> dict[int, bytes]:
    """Cut the JSON of the rejected items out of the message, where it parses."""
    if not indexes:
        return {}
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


def _dead_letters(
    rejects: Sequence[Reject],
    body: bytes,
    source: Source,
    device_id: str | None,
    received_at: datetime,
) -> list[DeadLetter]:
    """One dead letter per reject, counted in the metrics."""
    payloads = _item_payloads(body, [r.index for r in rejects if r.index >= 0])
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


def _log_rejects(source: Source, device_id: str, rejects: Sequence[Reject], total: int) -> None:
    """Log one line per message that had rejects: counts by reason and the first detail."""
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
