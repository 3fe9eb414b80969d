"""Webhook delivery from the outbox to a real HTTP receiver, with time simulated.

The receiver is an aiohttp server on a free port; the deliverer is driven with the times a
test gives, so that a minute of outage and minutes of backoff take no real time.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from core.webhook_signature import SIGNATURE_HEADER, verify
from ingest.alerts import Deliverer, DeliveryRound, RetryPolicy
from tests.ingest.alert_helpers import Evaluator, add_rule, add_webhook, evaluator
from tests.ingest.helpers import T0, add_device, open_writer

S = timedelta(seconds=1)
SECRET = "whsec_delivery-test"


@dataclass
class Received:
    key: str
    body: Any
    raw: bytes
    headers: dict[str, str]
    at: datetime
    status: int = 0


@dataclass
class Receiver:
    """Records every delivery; ``answer`` decides the response (200 by default)."""

    clock: datetime = T0
    seen: list[Received] = field(default_factory=list)
    answer: Callable[[Received], web.Response] = lambda _: web.Response(status=200)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        got = Received(
            request.headers["Idempotency-Key"],
            json.loads(raw),
            raw,
            dict(request.headers),
            self.clock,
        )
        self.seen.append(got)
        response = self.answer(got)
        got.status = response.status
        return response

    def accepted(self) -> list[str]:
        """Keys of the deliveries answered 2xx, in order."""
        return [r.key for r in self.seen if r.status == 200]


def ok_unless(
    down: Callable[[Received], bool], **headers: str
) -> Callable[[Received], web.Response]:
    def answer(got: Received) -> web.Response:
        if down(got):
            return web.Response(status=503, headers=headers)
        return web.Response(status=200)

    return answer


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[[Receiver], Any]]:
    servers: list[TestServer] = []

    async def start(receiver: Receiver) -> str:
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/hook"))

    yield start
    for server in servers:
        await server.close()


async def _hot_and_cold(db_url: str, storage_mode: str, ev: Evaluator, devices: int) -> None:
    """Five notifications at T0 (firing), three at T0+10 s (resolved), one at T0+20 s."""
    await add_rule(ev.conn, metric="temperature", agg="last", window_s=3600, op=">", threshold=30)
    keys = [await add_device(ev.conn, f"dev-{i}") for i in range(devices)]
    async with open_writer(db_url, storage_mode) as writer:
        for offset, hot in ((0, range(5)), (10, range(3, 5)), (20, (0, 3, 4))):
            now = T0 + offset * S
            await writer.write([(k, now, {"temperature": 40.0 if i in hot else 20.0})
                                for i, k in enumerate(keys)])  # fmt: skip
            await writer.flush_latest()
            await ev.at(now)


async def _outbox(ev: Evaluator, webhook: int) -> list[tuple[str, str]]:
    rows = await ev.rows(
        "SELECT idempotency_key::text, state FROM alert_notifications WHERE webhook_id = %s"
        " ORDER BY notification_id",
        webhook,
    )
    return [(r[0], r[1]) for r in rows]


@pytest.mark.parametrize("storage_mode", ["plain"])
async def test_a_webhook_down_for_a_minute_then_up_gets_everything_in_order(
    db_url: str, storage_mode: str, receivers: Callable[[Receiver], Any]
) -> None:
    steady, flaky = Receiver(), Receiver()
    flaky.answer = ok_unless(lambda got: got.at < T0 + 60 * S)
    policy = RetryPolicy(timeout_s=2, first_s=1, max_s=30, max_attempts=20)
    async with evaluator(db_url, storage_mode) as ev, aiohttp.ClientSession() as session:
        up = await add_webhook(ev.conn, await receivers(steady), secret=SECRET)
        down = await add_webhook(ev.conn, await receivers(flaky), secret=SECRET)
        deliverer = Deliverer(session, policy)
        await _hot_and_cold(db_url, storage_mode, ev, 5)
        for second in range(181):
            steady.clock = flaky.clock = T0 + second * S
            await deliverer.deliver_due(ev.conn, T0 + second * S)
        expected = {w: [key for key, _ in await _outbox(ev, w)] for w in (up, down)}
        states = {w: {state for _, state in await _outbox(ev, w)} for w in (up, down)}
    assert len(expected[up]) == len(expected[down]) == 9
    assert states == {up: {"delivered"}, down: {"delivered"}}
    assert steady.accepted() == expected[up]
    # The other webhook's outage held nothing of this one's back.
    assert [got.at for got in steady.seen] == [T0] * 5 + [T0 + 10 * S] * 3 + [T0 + 20 * S]
    assert flaky.accepted() == expected[down]
    refused = [got for got in flaky.seen if got.status == 503]
    # While it was down only the head of its queue was tried, again and again, backing off
    # (delays doubling from 1 s, capped at 30 s, drawn from their upper halves).
    assert {got.key for got in refused} == {expected[down][0]}
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(refused)]
    assert 4 <= len(refused) <= 9
    assert gaps[-1] >= 4
    assert max(gaps) <= 31
    # Back up at 60 s: everything arrived within one capped delay after, in order.
    assert flaky.seen[-1].at <= T0 + 91 * S


@pytest.mark.parametrize("storage_mode", ["plain"])
async def test_retry_after_holds_the_next_attempt_back(
    db_url: str, storage_mode: str, receivers: Callable[[Receiver], Any]
) -> None:
    receiver = Receiver()
    receiver.answer = ok_unless(lambda _: len(receiver.seen) == 1, **{"Retry-After": "120"})
    async with evaluator(db_url, storage_mode) as ev, aiohttp.ClientSession() as session:
        await add_webhook(ev.conn, await receivers(receiver), secret=SECRET)
        await _hot_and_cold(db_url, storage_mode, ev, 1)
        deliverer = Deliverer(session, RetryPolicy(first_s=1, max_s=5))
        for seconds in range(0, 200, 5):
            receiver.clock = T0 + seconds * S
            await deliverer.deliver_due(ev.conn, T0 + seconds * S)
    first, second, *_ = receiver.seen
    assert first.key == second.key
    assert second.at - first.at >= 120 * S


@pytest.mark.parametrize("storage_mode", ["plain"])
async def test_a_notification_given_up_on_is_dead_and_the_queue_moves_on(
    db_url: str, storage_mode: str, receivers: Callable[[Receiver], Any]
) -> None:
    receiver = Receiver()
    poisoned: list[str] = []

    def answer(got: Received) -> web.Response:
        if not poisoned:
            poisoned.append(got.key)
        return web.Response(status=500 if got.key == poisoned[0] else 200)

    receiver.answer = answer
    async with evaluator(db_url, storage_mode) as ev, aiohttp.ClientSession() as session:
        webhook = await add_webhook(ev.conn, await receivers(receiver), secret=SECRET)
        await _hot_and_cold(db_url, storage_mode, ev, 2)
        deliverer = Deliverer(session, RetryPolicy(first_s=1, max_s=2, max_attempts=3))
        rounds = [await deliverer.deliver_due(ev.conn, T0 + s * S) for s in range(60)]
        outbox = await _outbox(ev, webhook)
        dead = await ev.rows(
            "SELECT attempts, last_status, last_error FROM alert_notifications WHERE state = 'dead'"
        )
    assert [got.key for got in receiver.seen].count(poisoned[0]) == 3
    assert outbox[0] == (poisoned[0], "dead")
    assert {state for _, state in outbox[1:]} == {"delivered"}
    assert dead == [(3, 500, "HTTP 500 Internal Server Error")]
    assert sum(r.dead for r in rounds) == 1


@pytest.mark.parametrize("storage_mode", ["plain"])
async def test_a_delivery_cut_off_after_sending_is_sent_again_with_the_same_key(
    db_url: str, storage_mode: str, receivers: Callable[[Receiver], Any]
) -> None:
    receiver = Receiver()
    policy = RetryPolicy(timeout_s=3)
    async with evaluator(db_url, storage_mode) as ev, aiohttp.ClientSession() as session:
        webhook = await add_webhook(ev.conn, await receivers(receiver), secret=SECRET)
        await _hot_and_cold(db_url, storage_mode, ev, 1)
        deliverer = Deliverer(session, policy)
        # An evaluator claims the head and sends it, then dies before recording the answer.
        [claim] = await deliverer._claim(ev.conn, T0)
        await deliverer._send(claim, T0)
        assert await deliverer.deliver_due(ev.conn, T0 + 7 * S) == DeliveryRound()
        # Its claim (the time limit and 5 s) has run out: the successor sends it again,
        # then the notifications behind it.
        await deliverer.deliver_due(ev.conn, T0 + 30 * S)
        outbox = await _outbox(ev, webhook)
    keys = [got.key for got in receiver.seen]
    assert keys[:2] == [claim.idempotency_key, claim.idempotency_key]
    assert keys[1:] == [key for key, _ in outbox]
    assert {state for _, state in outbox} == {"delivered"}


@pytest.mark.parametrize("storage_mode", ["plain"])
async def test_bodies_are_signed_and_alertmanager_gets_its_own_format(
    db_url: str, storage_mode: str, receivers: Callable[[Receiver], Any]
) -> None:
    plain, manager = Receiver(), Receiver()
    async with evaluator(db_url, storage_mode) as ev, aiohttp.ClientSession() as session:
        await add_webhook(ev.conn, await receivers(plain), secret=SECRET)
        await add_webhook(ev.conn, await receivers(manager), "alertmanager", secret="whsec_am")
        await _hot_and_cold(db_url, storage_mode, ev, 1)
        await Deliverer(session, RetryPolicy()).deliver_due(ev.conn, T0 + 30 * S)
    first = plain.seen[0]
    assert verify(SECRET, first.raw, first.headers[SIGNATURE_HEADER])
    assert not verify("whsec_other", first.raw, first.headers[SIGNATURE_HEADER])
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["X-Telemetry-Attempt"] == "1"
    body = first.body
    assert body["idempotency_key"] == first.key
    assert (body["status"], body["device_id"], body["value"]) == ("firing", "dev-0", 40.0)
    assert body["rule"]["severity"] == "warning"
    assert body["links"]["alert"].endswith(f"/v1/alerts?rule_id={body['rule']['rule_id']}"
                                           "&device_id=dev-0")  # fmt: skip
    assert [got.body["status"] for got in plain.seen] == ["firing", "resolved", "firing"]
    firing, resolved = manager.seen[0], manager.seen[1]
    assert verify("whsec_am", firing.raw, firing.headers[SIGNATURE_HEADER])
    [alert] = firing.body
    assert alert["labels"] == {
        "alertname": "rule",
        "severity": "warning",
        "device_id": "dev-0",
        "rule_id": str(body["rule"]["rule_id"]),
    }
    assert alert["startsAt"] == body["firing_since"]
    assert "endsAt" not in alert
    assert resolved.body[0]["endsAt"] == plain.seen[1].body["resolved_at"]
