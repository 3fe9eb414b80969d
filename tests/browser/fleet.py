"""A small fleet for the console to show: statuses of every kind, a month of one device, rejects.

``greenhouse-01`` reports three metrics for 30 days, densest lately (every 10 s for the
last 3 hours, every minute for 2 days, every 10 minutes before), with two silences: 23
minutes from 45 minutes ago and 12 hours four days ago, each long enough to empty at least
one whole bucket of the ranges that show it (10 minutes for a day, 6 hours for 30 days).
The others are online (heard seconds ago), offline (heard hours ago) or never seen.
Everything is relative to ``now``, so the console's ranges (which end at its own now) see
the same shape on every run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from core.registry import create_device
from ingest.records import DeadLetter, DeviceUpdate, ReadingSet
from tests.ingest.helpers import open_writer

FEATURED = "greenhouse-01"
FEATURED_METRICS = ("co2", "humidity", "temperature")
# Silences of the featured device, as (ago_start, ago_end) before now.
GAPS = (
    (timedelta(minutes=45), timedelta(minutes=22)),
    (timedelta(days=4), timedelta(days=3, hours=12)),
)


@dataclass(frozen=True)
class Member:
    """A device of the fleet and how it has been heard."""

    device_id: str
    name: str | None
    metadata: dict[str, object]
    heard_ago: timedelta | None  # None: never seen
    seq_gaps: int = 0


def _members() -> list[Member]:
    online, offline = timedelta(seconds=4), timedelta(hours=3)
    members = [
        Member(FEATURED, "Greenhouse north", {"site": "north", "kind": "climate"}, online, 2),
        Member("greenhouse-02", "Greenhouse south", {"site": "south", "kind": "climate"}, online),
        Member("greenhouse-03", None, {"site": "south", "kind": "climate"}, offline, 5),
        Member("cold-room-01", "Cold room", {"site": "depot", "kind": "fridge"}, online),
        Member("cold-room-02", "Cold room spare", {"site": "depot"}, None),
        Member("weather-roof", "Roof station", {"site": "north", "floor": 4}, online, 1),
    ]
    members += [
        Member(
            f"pump-{i:02d}",
            f"Pump {i}",
            {"site": "north" if i % 2 else "south", "kind": "pump"},
            offline if i == 4 else online,
            9 if i == 2 else 0,
        )
        for i in range(1, 9)
    ]
    members += [
        Member(f"battery-{i:02d}", None, {"kind": "battery", "cells": 4}, online, i % 3)
        for i in range(1, 7)
    ]
    members += [
        Member(f"vehicle-{i:02d}", f"Van {i}", {"kind": "vehicle"}, None if i == 5 else online)
        for i in range(1, 6)
    ]
    members.append(Member("spare-tracker", "Tracker in stock", {}, None))
    return members


MEMBERS = _members()


def featured_times(now: datetime) -> list[datetime]:
    """When the featured device reported: whole seconds, oldest first, gaps left out."""
    end = now.replace(microsecond=0) - timedelta(minutes=2)
    t = end - timedelta(days=30)
    times = []
    while t < end:
        ago = now - t
        if not any(late < ago <= early for early, late in GAPS):
            times.append(t)
        if ago > timedelta(days=2):
            t += timedelta(minutes=10)
        elif ago > timedelta(hours=3):
            t += timedelta(minutes=1)
        else:
            t += timedelta(seconds=10)
    return times


def _climate(t: datetime, noise: random.Random) -> dict[str, float]:
    day = (t.hour * 3600 + t.minute * 60 + t.second) / 86_400
    warm = math.sin(2 * math.pi * (day - 0.375))
    return {
        "temperature": round(21 + 4 * warm + noise.uniform(-0.6, 0.6), 2),
        "humidity": round(58 - 9 * warm + noise.uniform(-2, 2), 1),
        "co2": round(650 + 180 * max(0.0, warm) + noise.uniform(-25, 25)),
    }


REJECTS = (
    ("http", FEATURED, "future_timestamp", "ts 2031-01-01T00:00:00Z is 4 years ahead"),
    ("mqtt", "pump-02", "schema", "values.pressure: not a finite number"),
    ("mqtt", "battery-03", "device_mismatch", "device_id 'battery-9' in the body"),
    ("http", None, "malformed", "line 1 column 17: expecting ','"),
    ("mqtt", "vehicle-02", "bad_name", "metric name '9speed' must start with a letter"),
)


@dataclass
class LoadedFleet:
    """What :func:`load_fleet` stored, for tests to compare the console with."""

    now: datetime
    featured: list[ReadingSet] = field(default_factory=list)

    def featured_in(self, start: datetime, end: datetime) -> list[datetime]:
        """Times of the featured device's readings in [start, end)."""
        return [ts for _, ts, _ in self.featured if start <= ts < end]


async def load_fleet(url: str, now: datetime | None = None) -> LoadedFleet:
    """Register the fleet and store its readings and rejects in the database at ``url``."""
    now = now or datetime.now(UTC)
    loaded = LoadedFleet(now)
    noise = random.Random(21)
    keys = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for member in MEMBERS:
            new = await create_device(
                conn,
                member.device_id,
                name=member.name,
                metadata=member.metadata,
                expected_interval_s=10,
            )
            row = await (
                await conn.execute(
                    "SELECT device_key FROM devices WHERE device_id = %s", [new.device_id]
                )
            ).fetchone()
            assert row is not None
            keys[member.device_id] = int(row[0])
    async with open_writer(url, "plain") as writer:
        loaded.featured = [(keys[FEATURED], t, _climate(t, noise)) for t in featured_times(now)]
        for first in range(0, len(loaded.featured), 2_000):
            await writer.write(loaded.featured[first : first + 2_000])
        for member in MEMBERS:
            if member.heard_ago is None:
                continue
            heard = now - member.heard_ago
            key = keys[member.device_id]
            sets: list[ReadingSet] = []
            if member.device_id != FEATURED:
                sets = [
                    (key, heard - timedelta(seconds=10 * k), _climate(heard, noise))
                    for k in range(3)
                ]
            update = DeviceUpdate(key, heard, 1, 100, member.seq_gaps)
            await writer.write(sets, [update])
        await writer.write_dead_letters(
            [
                DeadLetter(
                    source,  # type: ignore[arg-type]
                    reason,
                    detail,
                    payload=f'{{"device_id": "{device or "?"}", "values": {{"x": 1}}}}'.encode(),
                    device_id=device,
                )
                for source, device, reason, detail in REJECTS
            ]
        )
    return loaded
