"""Alert evaluation on both storage paths: every rule kind fires and resolves at the right time.

Time moves with the data: each test writes readings (through the batch writer, so that
``latest_readings`` and ``last_seen`` are what the ingest would make of them) up to a time,
evaluates at that time, and compares the transitions with what the rule says.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import psycopg
import pytest

from ingest import maintenance
from ingest.records import DeviceUpdate, ReadingSet
from ingest.writer import BatchWriter
from tests.ingest.alert_helpers import Evaluator, add_rule, add_webhook, evaluator
from tests.ingest.helpers import T0, add_device, open_writer

S = timedelta(seconds=1)
M = timedelta(minutes=1)


async def _device(url: str, device_id: str, **columns: object) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        key = await add_device(conn, device_id)
        await conn.execute("UPDATE devices SET created_at = %s WHERE device_key = %s", [T0, key])
        for name, value in columns.items():
            await conn.execute(
                f"UPDATE devices SET {name} = %s WHERE device_key = %s".encode(), [value, key]
            )
    return key


class Feed:
    """Writes a device's readings (and its last_seen) up to a time, once each."""

    def __init__(self, writer: BatchWriter, sets: list[ReadingSet]) -> None:
        self.writer = writer
        self.sets = sorted(sets, key=lambda s: s[1])
        self.next = 0

    async def until(self, now: datetime) -> None:
        due = []
        while self.next < len(self.sets) and self.sets[self.next][1] <= now:
            due.append(self.sets[self.next])
            self.next += 1
        if due:
            seen = [DeviceUpdate(key, ts) for key, ts, _ in due]
            await self.writer.write(due, seen)
            await self.writer.flush_latest()


def every(step: timedelta, start: datetime, end: datetime) -> list[datetime]:
    times, t = [], start
    while t <= end:
        times.append(t)
        t += step
    return times


async def _run(
    ev: Evaluator, feeds: list[Feed], times: list[datetime]
) -> dict[datetime, dict[tuple[int, str], str]]:
    states = {}
    for now in times:
        for feed in feeds:
            await feed.until(now)
        await ev.at(now)
        states[now] = await ev.states()
    return states


async def test_threshold_fires_after_for_s_and_resolves_below_the_clear_threshold(
    db_url: str, storage_mode: str
) -> None:
    key = await _device(db_url, "pump-1")

    def value(t: datetime) -> float:
        return 35.0 if T0 + 5 * M <= t < T0 + 8 * M else 28.0 if t < T0 + 12 * M else 20.0

    sets: list[ReadingSet] = [
        (key, t, {"temperature": 20.0 if t < T0 + 5 * M else value(t)})
        for t in every(10 * S, T0, T0 + 15 * M)
    ]
    async with (
        open_writer(db_url, storage_mode) as writer,
        evaluator(db_url, storage_mode) as ev,
    ):
        rule = await add_rule(
            ev.conn,
            metric="temperature",
            agg="max",
            window_s=60,
            op=">",
            threshold=30,
            clear_threshold=25,
            for_s=60,
        )
        await add_webhook(ev.conn, "http://receiver.test/hook")
        await _run(ev, [Feed(writer, sets)], every(15 * S, T0 + 15 * S, T0 + 15 * M))
        assert await ev.events(rule) == [
            (T0 + 5 * M, "pump-1", "pending"),
            (T0 + 6 * M, "pump-1", "firing"),
            (T0 + 13 * M, "pump-1", "resolved"),
        ]
        sent = await ev.notifications()
    assert [(n["status"], n["repeat"], n["value"]) for n in sent] == [
        ("firing", False, 35.0),
        ("resolved", False, 20.0),
    ]
    assert sent[0]["firing_since"].startswith(f"{T0 + 6 * M:%Y-%m-%dT%H:%M:%S}")
    assert sent[0]["rule"]["rule_id"] == rule
    assert sent[0]["links"]["device"] == "http://api.test/v1/devices/pump-1"


async def test_a_value_hovering_at_the_threshold_flaps_only_without_hysteresis(
    db_url: str, storage_mode: str
) -> None:
    key = await _device(db_url, "tank-1")
    times = every(10 * S, T0, T0 + 5 * M)
    sets: list[ReadingSet] = [
        (key, t, {"level": 31.0 if i % 2 else 29.0}) for i, t in enumerate(times)
    ]
    async with (
        open_writer(db_url, storage_mode) as writer,
        evaluator(db_url, storage_mode) as ev,
    ):
        common = {"metric": "level", "agg": "last", "window_s": 60, "op": ">", "threshold": 30}
        steady = await add_rule(ev.conn, clear_threshold=25, **common)
        flappy = await add_rule(ev.conn, **common)
        await _run(ev, [Feed(writer, sets)], times)
        assert [e for _, _, e in await ev.events(steady)] == ["firing"]
        flaps = [e for _, _, e in await ev.events(flappy)]
    assert flaps == ["firing", "resolved"] * 15


async def test_outside_a_band_fires_and_resolves_inside_the_clear_band(
    db_url: str, storage_mode: str
) -> None:
    key = await _device(db_url, "fridge-1")
    values = [20, 31, 29, 27, 9, 11, 13]
    times = [T0 + i * 10 * S for i in range(len(values))]
    sets: list[ReadingSet] = [
        (key, t, {"temperature": float(v)}) for t, v in zip(times, values, strict=True)
    ]
    async with (
        open_writer(db_url, storage_mode) as writer,
        evaluator(db_url, storage_mode) as ev,
    ):
        rule = await add_rule(
            ev.conn,
            metric="temperature",
            agg="last",
            window_s=60,
            op="outside",
            low=10,
            high=30,
            clear_low=12,
            clear_high=28,
        )
        states = await _run(ev, [Feed(writer, sets)], times)
    assert [states[t].get((rule, "fridge-1"), "ok") for t in times] == [
        "ok", "firing", "firing", "resolved", "firing", "firing", "resolved",
    ]  # fmt: skip


def _pseudo(i: int) -> float:
    return round(math.sin(i * 0.7) * 40 + (i % 7), 3)


async def test_window_aggregates_match_the_readings_across_rollups_and_raw_rows(
    db_url: str, storage_mode: str
) -> None:
    key = await _device(db_url, "meter-1")
    times = every(10 * S, T0, T0 + 30 * M)
    sets: list[ReadingSet] = [(key, t, {"power": _pseudo(i)}) for i, t in enumerate(times)]
    now = T0 + 25 * M + 17 * S
    async with open_writer(db_url, storage_mode) as writer:
        await Feed(writer, sets).until(now)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        # The rollups end in the middle of the windows: the rest comes from raw rows.
        if storage_mode == "plain":
            await maintenance.refresh_rollups(conn, T0 + 21 * M)
        else:
            await conn.execute(
                "CALL refresh_continuous_aggregate('readings_1m', NULL, %s)", [T0 + 20 * M]
            )
    window = [v["power"] for _, t, v in sets if now - 620 * S <= t <= now]
    expected = {
        "avg": sum(window) / len(window),
        "min": min(window),
        "max": max(window),
        "count": float(len(window)),
        "last": window[-1],
    }
    async with evaluator(db_url, storage_mode) as ev:
        rules = {
            agg: await add_rule(
                ev.conn, metric="power", agg=agg, window_s=620, op=">=", threshold=-1e12
            )
            for agg in expected
        }
        never = await add_rule(
            ev.conn, metric="pressure", agg="count", window_s=60, op="<", threshold=1
        )
        await ev.at(now)
        got = dict(await ev.rows("SELECT rule_id, value FROM alert_states WHERE state = 'firing'"))
    for agg, rule in rules.items():
        assert got[rule] == pytest.approx(expected[agg], rel=1e-12), agg
    assert got[never] == 0.0  # a metric never stored counts nothing


async def test_no_data_fires_after_for_s_and_resolves_on_the_next_reading(
    db_url: str, storage_mode: str
) -> None:
    talker = await _device(db_url, "sensor-a")
    await _device(db_url, "sensor-b")  # registered at T0, never sends

    def values(t: datetime) -> dict[str, float]:
        quiet = T0 + 5 * M <= t < T0 + 10 * M
        return {"temperature": 1.0} | ({} if quiet else {"humidity": 2.0})

    sets: list[ReadingSet] = [(talker, t, values(t)) for t in every(10 * S, T0, T0 + 12 * M)]
    async with (
        open_writer(db_url, storage_mode) as writer,
        evaluator(db_url, storage_mode) as ev,
    ):
        humidity = await add_rule(ev.conn, kind="no_data", metric="humidity", for_s=120)
        anything = await add_rule(ev.conn, kind="no_data", for_s=120)
        await _run(ev, [Feed(writer, sets)], every(15 * S, T0, T0 + 12 * M))
        assert await ev.events(humidity) == [
            (T0 + 2 * M, "sensor-b", "firing"),
            (T0 + 7 * M, "sensor-a", "firing"),  # 120 s after its last humidity, at 4:50
            (T0 + 10 * M, "sensor-a", "resolved"),
        ]
        assert await ev.events(anything) == [(T0 + 2 * M, "sensor-b", "firing")]


async def test_offline_fires_past_factor_times_the_interval_and_resolves_when_heard(
    db_url: str, storage_mode: str
) -> None:
    chatty = await _device(db_url, "gw-1", expected_interval_s=10)
    quiet = await _device(db_url, "gw-2")  # no interval: the default, 60 s
    await _device(db_url, "gw-3")  # never seen: not offline
    sets: list[ReadingSet] = [
        (chatty, t, {"up": 1.0})
        for t in every(10 * S, T0, T0 + 8 * M)
        if not T0 + 3 * M < t < T0 + 6 * M
    ]
    sets.append((quiet, T0, {"up": 1.0}))
    async with (
        open_writer(db_url, storage_mode) as writer,
        evaluator(db_url, storage_mode) as ev,
    ):
        fleet = await add_rule(ev.conn, kind="offline")
        own = await add_rule(ev.conn, kind="offline", interval_s=100, factor=1.0, device_id="gw-1")
        await _run(ev, [Feed(writer, sets)], every(15 * S, T0, T0 + 8 * M))
        assert await ev.events(fleet) == [
            (T0 + 3 * M + 15 * S, "gw-2", "firing"),  # 180 s after T0, strictly more
            (T0 + 3 * M + 45 * S, "gw-1", "firing"),  # 30 s after 3:00, strictly more
            (T0 + 6 * M, "gw-1", "resolved"),
        ]
        assert await ev.events(own) == [
            (T0 + 4 * M + 45 * S, "gw-1", "firing"),
            (T0 + 6 * M, "gw-1", "resolved"),
        ]


async def test_leaving_the_scope_disabling_and_deleting_resolve_firing_alerts(
    db_url: str, storage_mode: str
) -> None:
    berlin = await _device(db_url, "berlin-1", metadata='{"site": "berlin", "floor": 2}')
    paris = await _device(db_url, "paris-1", metadata='{"site": "paris"}')
    sets: list[ReadingSet] = [(k, T0, {"temperature": 40.0}) for k in (berlin, paris)]
    hot = {"metric": "temperature", "agg": "last", "window_s": 600, "op": ">", "threshold": 30}
    async with (
        open_writer(db_url, storage_mode) as writer,
        evaluator(db_url, storage_mode) as ev,
    ):
        await Feed(writer, sets).until(T0)
        await add_webhook(ev.conn, "http://receiver.test/hook")
        fleet = await add_rule(ev.conn, **hot)
        site = await add_rule(ev.conn, selector={"site": "berlin"}, **hot)
        one = await add_rule(ev.conn, device_id="paris-1", **hot)
        await ev.at(T0 + S)
        assert await ev.states() == {
            (fleet, "berlin-1"): "firing",
            (fleet, "paris-1"): "firing",
            (site, "berlin-1"): "firing",
            (one, "paris-1"): "firing",
        }
        await ev.conn.execute(
            'UPDATE devices SET metadata = \'{"site": "paris"}\' WHERE device_key = %s', [berlin]
        )
        await ev.conn.execute("UPDATE alert_rules SET enabled = false WHERE rule_id = %s", [one])
        await ev.conn.execute(
            "UPDATE alert_rules SET deleted_at = now() WHERE rule_id = %s", [fleet]
        )
        await ev.at(T0 + 2 * S)
        assert set((await ev.states()).values()) == {"resolved"}
        resolved = [n for n in await ev.notifications() if n["status"] == "resolved"]
    assert sorted((n["rule"]["rule_id"], n["device_id"], n["detail"]) for n in resolved) == [
        (fleet, "berlin-1", "the rule was disabled or deleted"),
        (fleet, "paris-1", "the rule was disabled or deleted"),
        (site, "berlin-1", "the device left the rule's scope"),
        (one, "paris-1", "the rule was disabled or deleted"),
    ]


async def test_repeats_acknowledgement_and_silence_decide_what_is_notified(
    db_url: str, storage_mode: str
) -> None:
    key = await _device(db_url, "boiler-1")
    plan = {0: 40.0, 200: 20.0, 300: 40.0, 400: 20.0, 500: 40.0}
    sets: list[ReadingSet] = [(key, T0 + s * S, {"temperature": v}) for s, v in plan.items()]
    async with (
        open_writer(db_url, storage_mode) as writer,
        evaluator(db_url, storage_mode) as ev,
    ):
        feed = Feed(writer, sets)
        await add_webhook(ev.conn, "http://receiver.test/hook")
        rule = await add_rule(
            ev.conn,
            metric="temperature",
            agg="last",
            window_s=3600,
            op=">",
            threshold=30,
            renotify_s=60,
        )
        alert = "WHERE rule_id = %s AND device_key = %s"

        async def at(seconds: int, then: str | None = None) -> None:
            await feed.until(T0 + seconds * S)
            await ev.at(T0 + seconds * S)
            if then is not None:
                statement = f"UPDATE alert_states SET {then} {alert}"
                await ev.conn.execute(statement.encode(), [T0 + 1000 * S, rule, key])

        for seconds in (0, 30, 60, 90):
            await at(seconds)
        await at(100, "acknowledged_at = %s")
        for seconds in (120, 180, 200, 300):  # acknowledged; resolved; fires again
            await at(seconds)
        await at(330, "silenced_until = %s")
        for seconds in (360, 400, 500, 600, 1000):  # silenced: the resolution still goes
            await at(seconds)
        sent = [(n["status"], n["repeat"], n["at"][11:19]) for n in await ev.notifications()]
    assert sent == [
        ("firing", False, "10:00:00"),
        ("firing", True, "10:01:00"),
        ("resolved", False, "10:03:20"),
        ("firing", False, "10:05:00"),
        ("resolved", False, "10:06:40"),
        ("firing", False, "10:16:40"),  # fired at 500 s, silenced until 1000 s
    ]


async def test_a_failure_before_commit_leaves_no_trace_and_a_rerun_decides_once(
    db_url: str, storage_mode: str
) -> None:
    key = await _device(db_url, "valve-1")
    async with (
        open_writer(db_url, storage_mode) as writer,
        evaluator(db_url, storage_mode) as ev,
    ):
        await Feed(writer, [(key, T0, {"pressure": 9.0})]).until(T0)
        await add_webhook(ev.conn, "http://receiver.test/hook")
        await add_rule(ev.conn, metric="pressure", agg="last", window_s=60, op=">", threshold=5)
        # The outbox refuses its rows: the state change must roll back with them.
        await ev.conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'outbox down'; END $$"
        )
        await ev.conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON alert_notifications"
            " FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
        with pytest.raises(psycopg.errors.RaiseException):
            await ev.at(T0 + S)
        assert await ev.states() == {}
        assert await ev.events() == []
        await ev.conn.execute("DROP TRIGGER refuse ON alert_notifications")
        first = await ev.at(T0 + S)
        again = await ev.at(T0 + S)  # a restarted evaluator at the same moment
        assert (first.transitions, first.notifications) == (1, 1)
        assert (again.transitions, again.notifications) == (0, 0)
        assert [e for _, _, e in await ev.events()] == ["firing"]


@pytest.mark.parametrize("storage_mode", ["plain"])
async def test_the_evaluator_row_says_who_evaluated_when(db_url: str, storage_mode: str) -> None:
    async with evaluator(db_url, storage_mode, holder="host-a:1") as ev:
        await ev.at(T0)
        await ev.at(T0 + S)
        rows = await ev.rows("SELECT holder, evaluated_at, runs FROM alert_evaluator")
    assert rows == [("host-a:1", T0 + S, 2)]
