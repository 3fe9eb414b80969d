"""Alerts with the platform as real processes: crashes, a second host, a device going silent.

The ingest evaluates every half second here and retries deliveries within a second; each
test waits on facts (a delivery received, a row committed, the evaluator's holder changed,
a counter on ``/metrics``), each with a deadline. They run on plain PostgreSQL only: what
they exercise (locks, the outbox, processes dying) is the same on both storage paths, and
every rule kind is evaluated on both in tests/ingest/test_alerts_eval.py.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from simulator.processes import Child, spawn
from simulator.services import free_port
from tests.e2e.helpers import new_device, post, query
from tests.support.processes import ServiceProcess, api_env
from tests.support.webhooks import WebhookReceiver

pytestmark = [pytest.mark.faults, pytest.mark.parametrize("storage_mode", ["plain"])]

SECRET = "whsec_e2e-alerts"
FAST = {
    "alert_eval_interval_s": "0.5",
    "alert_delivery_timeout_s": "2",
    "alert_retry_min_s": "0.2",
    "alert_retry_max_s": "1",
}
IngestFactory = Callable[..., ServiceProcess]


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _rule_and_webhook(db_url: str, url: str, **rule: object) -> int:
    columns = {"name": "Too hot", "kind": "threshold", "severity": "critical", "metric":
               "temperature", "agg": "last", "window_s": 3600, "op": ">", "threshold": 50,
               "clear_threshold": 50} | rule  # fmt: skip
    names = ", ".join(columns)
    values = ", ".join(f"%({name})s" for name in columns)
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            f"INSERT INTO alert_rules ({names}) VALUES ({values}) RETURNING rule_id".encode(),
            columns,
        ).fetchone()
        conn.execute("INSERT INTO alert_webhooks (url, secret) VALUES (%s, %s)", [url, SECRET])
    assert row is not None
    return int(row[0])


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A receiver on a port of its own, which a test starts when it wants it listening."""
    made = WebhookReceiver(SECRET, free_port())
    yield made
    made.stop()


def _outbox(db_url: str) -> list[tuple[Any, ...]]:
    return query(
        db_url,
        "SELECT idempotency_key::text, state, attempts FROM alert_notifications"
        " ORDER BY notification_id",
    )


async def test_killed_between_its_commit_and_the_answer_it_delivers_the_same_key_again(
    db_url: str, ingest_factory: IngestFactory, receiver: WebhookReceiver
) -> None:
    _rule_and_webhook(db_url, receiver.url)
    token = await new_device(db_url, "kiln-1")
    receiver.released.clear()  # the receiver takes the first delivery and does not answer
    receiver.start()
    ingest = ingest_factory(**FAST)
    status, _, _ = await post(ingest.url, token, {"values": {"temperature": 99.0}})
    assert status == 200
    [first] = wait_for("the first delivery", receiver.deliveries)
    assert first.signed
    assert first.body["status"] == "firing"
    # The transition and its notification are committed; the answer never came.
    assert _outbox(db_url) == [(first.key, "pending", 1)]
    [worker] = ingest.worker_pids()
    os.kill(worker, signal.SIGKILL)
    receiver.released.set()
    wait_for("the delivery recorded", lambda: _outbox(db_url)[0][1] == "delivered")
    keys = [got.key for got in receiver.deliveries()]
    assert keys == [first.key, first.key]  # twice, with one key: never lost
    events = query(db_url, "SELECT event FROM alert_events")
    assert events == [("firing",)]  # the restarted evaluator decided nothing again


async def test_killed_before_the_receiver_was_up_it_delivers_once_up(
    db_url: str, ingest_factory: IngestFactory, receiver: WebhookReceiver
) -> None:
    _rule_and_webhook(db_url, receiver.url)  # nothing listens there yet
    token = await new_device(db_url, "kiln-2")
    ingest = ingest_factory(**FAST)
    assert (await post(ingest.url, token, {"values": {"temperature": 99.0}}))[0] == 200
    wait_for("a refused attempt", lambda: [r for r in _outbox(db_url) if r[2] >= 1])
    [worker] = ingest.worker_pids()
    os.kill(worker, signal.SIGKILL)
    receiver.start()
    wait_for("the delivery recorded", lambda: _outbox(db_url)[0][1] == "delivered")
    [(key, _, _)] = _outbox(db_url)
    assert [got.key for got in receiver.deliveries()] == [key]
    assert query(db_url, "SELECT event FROM alert_events") == [("firing",)]


async def test_a_webhook_down_then_up_gets_everything_in_order(
    db_url: str, ingest_factory: IngestFactory, receiver: WebhookReceiver
) -> None:
    _rule_and_webhook(db_url, receiver.url)  # nothing listens there yet
    tokens = [await new_device(db_url, f"oven-{i}") for i in range(3)]
    ingest = ingest_factory(**FAST)
    for token in tokens:
        assert (await post(ingest.url, token, {"values": {"temperature": 99.0}}))[0] == 200
    wait_for("three firing", lambda: len(_outbox(db_url)) == 3)
    for token in tokens:
        assert (await post(ingest.url, token, {"values": {"temperature": 20.0}}))[0] == 200
    wait_for("three resolved", lambda: len(_outbox(db_url)) == 6)
    # The outage lasts until the head of the queue was refused five times, backing off.
    wait_for("refused attempts", lambda: _outbox(db_url)[0][2] >= 5)
    assert [row[1] for row in _outbox(db_url)] == ["pending"] * 6
    receiver.start()
    wait_for("every delivery", lambda: {r[1] for r in _outbox(db_url)} == {"delivered"})
    got = receiver.deliveries()
    assert [d.key for d in got] == [row[0] for row in _outbox(db_url)]  # in order, once each
    assert all(d.signed for d in got)
    assert [(d.body["device_id"], d.body["status"]) for d in got] == [
        (f"oven-{i}", status) for status in ("firing", "resolved") for i in range(3)
    ]


def _holder(db_url: str) -> tuple[str, int] | None:
    rows = query(db_url, "SELECT holder, runs FROM alert_evaluator")
    return (str(rows[0][0]), int(rows[0][1])) if rows else None


def _evaluations(host: ServiceProcess) -> float:
    """Evaluations this ingest host committed, from its ``/metrics``."""
    status, body = host.get("/metrics")
    assert status == 200
    found = re.search(rb"^ingest_alert_evaluations_total ([0-9.e+]+)$", body, re.MULTILINE)
    return float(found[1]) if found else 0.0


def test_two_ingest_hosts_one_evaluator_and_the_other_takes_over_its_death(
    db_url: str, ingest_factory: IngestFactory
) -> None:
    interval_s = 1.0
    hosts = [ingest_factory(**FAST | {"alert_eval_interval_s": str(interval_s)}) for _ in "ab"]
    first_holder, runs = wait_for("an evaluation", lambda: _holder(db_url))
    leader_pid = int(first_holder.rsplit(":", 1)[1])
    [leader] = [host for host in hosts if leader_pid in host.worker_pids()]
    [survivor] = [host for host in hosts if host is not leader]
    wait_for("five more evaluations", lambda: (_holder(db_url) or ("", 0))[1] >= runs + 5)
    # Every evaluation so far was the leader's; the other host tried the lock and waited.
    state = _holder(db_url)
    assert state is not None
    assert state[0] == first_holder
    assert _evaluations(survivor) == 0
    assert _evaluations(leader) >= state[1]
    assert leader.child is not None
    leader.child.kill()  # SIGKILL to the supervisor and its worker at once
    killed_at = time.monotonic()
    [worker] = survivor.worker_pids()

    def survivor_evaluates() -> bool:
        state = _holder(db_url)
        return state is not None and state[0].endswith(f":{worker}")

    wait_for("the survivor to evaluate", survivor_evaluates)
    took_s = time.monotonic() - killed_at
    # One interval, and a margin for a loaded machine: PostgreSQL frees the lock as soon as
    # the dead process's socket closes, and the survivor's next tick takes it.
    assert took_s < interval_s + 2.0, f"took over after {took_s:.1f} s"
    assert _evaluations(survivor) >= 1


def _simulator(tmp_path: Path, api: ServiceProcess, ingest: ServiceProcess, n: int) -> Child:
    args = [
        "simulator", "run",
        "--api-url", api.url, "--api-key", ADMIN_KEY, "--ingest-url", ingest.url,
        "--devices", "1", "--rate", "4", "--protocols", "http",
        "--fleet", str(tmp_path / "fleet.json"), "--quiet",
    ]  # fmt: skip
    return spawn("simulator", args, {}, tmp_path / f"simulator-{n}.log")


ADMIN_KEY = "ak_e2e-alerts-admin-key-0123456789abcdefghijklmno"


def test_a_simulated_device_taken_offline_fires_and_resolves(
    db_url: str, ingest_factory: IngestFactory, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    receiver.start()
    _rule_and_webhook(
        db_url, receiver.url, name="Gone quiet", kind="offline", metric=None, agg=None,
        window_s=None, op=None, threshold=None, clear_threshold=None, factor=2.0, interval_s=1,
    )  # fmt: skip
    ingest = ingest_factory(**FAST)
    with ServiceProcess("api", api_env(db_url, ADMIN_KEY), tmp_path / "api.log") as api:
        online = _simulator(tmp_path, api, ingest, 1)
        try:
            wait_for("the device heard", lambda: query(db_url, "SELECT last_seen FROM devices"))
            heard = _holder(db_url)
            assert heard is not None
            # Ten evaluations while it sends: no alert.
            wait_for("ten evaluations", lambda: (_holder(db_url) or ("", 0))[1] >= heard[1] + 10)
            assert receiver.deliveries() == []
        finally:
            online.stop()  # the simulator stops: the device goes silent
        [firing] = wait_for("the firing", receiver.deliveries)
        assert (firing.body["status"], firing.body["device_id"]) == ("firing", "sim-00000")
        assert firing.body["value"] > 2.0
        back = _simulator(tmp_path, api, ingest, 2)  # the same device, from its fleet file
        try:
            wait_for("the resolution", lambda: len(receiver.deliveries()) == 2)
        finally:
            back.stop()
    resolved = receiver.deliveries()[1]
    assert (resolved.body["status"], resolved.body["device_id"]) == ("resolved", "sim-00000")
    assert resolved.signed
