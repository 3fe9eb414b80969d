"""Worker 0's hand-off of MQTT messages to the other workers, in process over a Unix socket."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from ingest.handoff import Dispatcher, HandoffClient
from ingest.mqtt import Delivery
from tests.e2e.helpers import wait_for


class Consumer:
    """Stands in for worker 0's consumer: groups to hand out, and what gets acknowledged."""

    def __init__(self) -> None:
        self.groups: asyncio.Queue[list[Delivery]] = asyncio.Queue()
        self.acked: list[int] = []
        self._mid = 0

    async def receive(self) -> list[Delivery]:
        return await self.groups.get()

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        self.acked += [d.mid for d in deliveries]

    def publish(self, count: int, *, receipt: bool = False) -> list[int]:
        group = []
        for _ in range(count):
            self._mid += 1
            group.append(
                Delivery(
                    f"telemetry/d{self._mid}",
                    b'{"values": {"t": 1}}',
                    self._mid,
                    1,
                    1,
                    f"receipts/d{self._mid}/r" if receipt else None,
                    b"corr" if receipt else None,
                )
            )
        self.groups.put_nowait(group)
        return [d.mid for d in group]


def _topics(group: Sequence[Delivery]) -> list[str]:
    return [d.topic for d in group]


def _topics_of(mids: Sequence[int]) -> list[str]:
    return [f"telemetry/d{mid}" for mid in mids]


@asynccontextmanager
async def _joined(
    tmp_path: Path, *, window: int
) -> AsyncIterator[tuple[Consumer, Dispatcher, HandoffClient]]:
    """Worker 0's dispatcher and one other worker, connected to each other."""
    consumer = Consumer()
    socket = tmp_path / "handoff.sock"
    async with (
        Dispatcher(consumer.receive, consumer.ack, socket, window=window) as dispatcher,
        HandoffClient(socket) as helper,
    ):
        await wait_for(lambda: dispatcher.helpers == 1 and helper.connected, what="joined")
        yield consumer, dispatcher, helper


async def test_groups_go_to_the_other_worker_and_are_acknowledged_after_it_is_done(
    tmp_path: Path,
) -> None:
    async with _joined(tmp_path, window=100) as (consumer, _dispatcher, helper):
        sent = consumer.publish(3, receipt=True)
        group = await helper.receive()
        assert [(d.topic, d.response_topic, d.correlation) for d in group] == [
            (f"telemetry/d{mid}", f"receipts/d{mid}/r", b"corr") for mid in sent
        ]
        assert consumer.acked == []  # nothing before the other worker says so
        helper.ack(group)
        await wait_for(lambda: consumer.acked == sent, what="the acknowledgements")


async def test_a_full_window_keeps_the_group_with_worker_zero(tmp_path: Path) -> None:
    async with _joined(tmp_path, window=5) as (consumer, dispatcher, helper):
        handed = consumer.publish(4)
        assert _topics(await helper.receive()) == _topics_of(handed)
        kept = consumer.publish(4)  # 8 > 5 unfinished: worker 0 keeps it
        async with asyncio.timeout(10):
            assert _topics(await dispatcher.local_receive()) == _topics_of(kept)


async def test_worker_zero_keeps_a_group_while_it_holds_under_half_of_the_others_share(
    tmp_path: Path,
) -> None:
    async with _joined(tmp_path, window=100) as (consumer, dispatcher, helper):
        first = consumer.publish(4)  # worker 0 holds 0, the other 0: handed
        second = consumer.publish(4)  # 0 < half of 4: kept
        third = consumer.publish(4)  # 4 >= half of 4: handed
        async with asyncio.timeout(10):
            assert _topics(await helper.receive()) == _topics_of(first)
            kept = await dispatcher.local_receive()
            assert _topics(await helper.receive()) == _topics_of(third)
        assert _topics(kept) == _topics_of(second)
        dispatcher.local_ack(kept)  # committed here: worker 0 holds nothing again
        assert consumer.acked == second
        fourth = consumer.publish(4)  # 0 < half of 8: kept
        async with asyncio.timeout(10):
            assert _topics(await dispatcher.local_receive()) == _topics_of(fourth)


async def test_what_a_leaving_worker_had_not_finished_is_handed_to_another(
    tmp_path: Path,
) -> None:
    consumer = Consumer()
    socket = tmp_path / "handoff.sock"
    async with Dispatcher(consumer.receive, consumer.ack, socket, window=100) as dispatcher:
        first = HandoffClient(socket)
        await first.open()
        await wait_for(lambda: dispatcher.helpers == 1, what="the first worker")
        sent = consumer.publish(2)
        await first.receive()
        await first.close()  # dies without finishing
        async with asyncio.timeout(10):
            again = await dispatcher.local_receive()
        assert [d.mid for d in again] == sent
        assert consumer.acked == []


async def test_acknowledgements_for_an_earlier_worker_zero_are_dropped(tmp_path: Path) -> None:
    socket = tmp_path / "handoff.sock"
    old = Consumer()
    helper = HandoffClient(socket)
    async with helper:
        # It closes with a group unfinished: no need to wait for it.
        async with Dispatcher(old.receive, old.ack, socket, window=100, drain_s=0.1) as dispatcher:
            await wait_for(lambda: dispatcher.helpers == 1, what="joined")
            old.publish(1)
            stale = await helper.receive()
        await wait_for(lambda: not helper.connected, what="worker 0 gone")
        new = Consumer()
        async with Dispatcher(new.receive, new.ack, socket, window=100) as dispatcher:
            await wait_for(lambda: dispatcher.helpers == 1, what="joined again")
            sent = new.publish(1)  # the same group number as the stale one
            fresh = await helper.receive()
            helper.ack(stale)
            helper.ack(fresh)
            await wait_for(lambda: new.acked == sent, what="the fresh acknowledgement")
        assert old.acked == []


async def test_worker_zero_stops_with_a_worker_connected_without_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    consumer = Consumer()
    socket = tmp_path / "handoff.sock"
    helper = HandoffClient(socket)
    async with helper:
        async with Dispatcher(consumer.receive, consumer.ack, socket, window=100) as dispatcher:
            await wait_for(lambda: dispatcher.helpers == 1 and helper.connected, what="joined")
        await wait_for(lambda: not helper.connected, what="the worker to see worker 0 go")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
