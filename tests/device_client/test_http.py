"""The HTTP transport against a small aiohttp fake of the ingest endpoint."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from device_client import (
    BatchConfig,
    Forwarder,
    HttpConfig,
    ReconnectConfig,
    Spool,
    SpoolConfig,
    TlsConfig,
)
from device_client.transport_http import HttpTransport, parse_retry_after
from tests.device_client.helpers import wait_for

Reply = Callable[[list[dict[str, Any]]], web.Response]


class FakeIngest:
    """``POST /v1/telemetry`` served from a thread; ``script`` decides each reply."""

    def __init__(self, script: Reply) -> None:
        self.script = script
        self.requests: list[tuple[float, str, list[dict[str, Any]]]] = []
        self.stored: dict[int, dict[str, Any]] = {}
        self.attributes: list[dict[str, Any]] = []
        self.attributes_status = 204
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-ingest", daemon=True)
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        items = json.loads(await request.read())
        self.requests.append((time.monotonic(), request.headers.get("Authorization", ""), items))
        response = self.script(items)
        if response.status == 200:
            rejected = {r["index"] for r in json.loads(response.text or "{}").get("rejected", [])}
            for index, item in enumerate(items):
                if index not in rejected:
                    self.stored.setdefault(item["seq"], item)
        return response

    async def _attributes(self, request: web.Request) -> web.Response:
        self.attributes.append(json.loads(await request.read()))
        return web.Response(status=self.attributes_status)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/telemetry", self._handle)
        app.router.add_put("/v1/attributes", self._attributes)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> FakeIngest:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/telemetry"


def ok(items: list[dict[str, Any]], rejected: list[dict[str, Any]] | None = None) -> web.Response:
    rejected = rejected or []
    return web.json_response(
        {"accepted": len(items) - len(rejected), "duplicates": 0, "rejected": rejected}
    )


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(SpoolConfig(path=tmp_path / "spool.db"), "dev-http") as s:
        s.append([(f"2026-01-01T00:00:{i:02d}.000000Z", {"v": float(i)}, None) for i in range(40)])
        yield s


def drain(spool: Spool, url: str, timeout_s: float = 10.0, attributes: bytes = b"{}") -> Forwarder:
    stop = threading.Event()
    config = HttpConfig(url=url, token="tok-1", timeout_s=5)
    transport = HttpTransport(config, TlsConfig(), attributes)
    forwarder = Forwarder(
        spool,
        transport,
        BatchConfig(max_readings=10, interval_s=0.2),
        ReconnectConfig(initial_s=0.1, max_s=0.5),
        stop=stop,
    )
    thread = threading.Thread(target=forwarder.run)
    thread.start()
    try:
        wait_for(lambda: spool.backlog == 0, timeout_s, "the spool to drain")
    finally:
        stop.set()
        thread.join(10)
    return forwarder


def test_200_delivers_everything_in_order(spool: Spool) -> None:
    with FakeIngest(ok) as server:
        drain(spool, server.url)
    assert [seq for _, _, items in server.requests for seq in (i["seq"] for i in items)] == list(
        range(1, 41)
    )
    assert {auth for _, auth, _ in server.requests} == {"Bearer tok-1"}
    assert len(server.requests) == 4
    assert spool.status().counters["sent_total"] == 40
    assert server.attributes == [{}]  # once, before the first batch


@pytest.mark.parametrize("status", [204, 404, 405, 400])
def test_attributes_are_reported_once_and_a_refusal_does_not_hold_up_the_readings(
    spool: Spool, status: int
) -> None:
    with FakeIngest(ok) as server:
        server.attributes_status = status
        drain(spool, server.url, attributes=b'{"model": "pi4", "agent": "telemetry-device"}')
    assert server.attributes == [{"model": "pi4", "agent": "telemetry-device"}]
    assert spool.status().counters["sent_total"] == 40


def test_429_and_503_are_retried_after_the_pause(spool: Spool) -> None:
    replies = iter(
        [
            web.Response(status=429, headers={"Retry-After": "1"}),
            web.Response(status=503, headers={"Retry-After": "0"}),
            web.Response(status=500, text="boom"),
        ]
    )

    def script(items: list[dict[str, Any]]) -> web.Response:
        return next(replies, None) or ok(items)

    with FakeIngest(script) as server:
        forwarder = drain(spool, server.url)
    times = [t for t, _, _ in server.requests]
    assert times[1] - times[0] >= 0.95  # honoured Retry-After: 1
    assert sorted(server.stored) == list(range(1, 41))
    assert forwarder.stats.failures == 3
    assert forwarder.stats.last_error is not None
    assert "500" in forwarder.stats.last_error


def test_partial_rejects_are_dropped_and_counted(spool: Spool) -> None:
    def script(items: list[dict[str, Any]]) -> web.Response:
        bad = [
            {"index": n, "reason": "future_timestamp", "detail": "too far ahead"}
            for n, item in enumerate(items)
            if item["seq"] in (3, 17)
        ]
        return ok(items, bad)

    with FakeIngest(script) as server:
        forwarder = drain(spool, server.url)
    assert sorted(server.stored) == [s for s in range(1, 41) if s not in (3, 17)]
    assert forwarder.stats.rejected == 2
    spool.flush()
    assert spool.status().counters["rejected_total"] == 2
    assert spool.depth[0] == 0


def test_400_batch_is_split_until_the_culprit_is_dropped(spool: Spool) -> None:
    def script(items: list[dict[str, Any]]) -> web.Response:
        if any(item["seq"] == 5 for item in items):
            return web.Response(status=400, text="item 0: malformed")
        return ok(items)

    with FakeIngest(script) as server:
        forwarder = drain(spool, server.url)
    assert sorted(server.stored) == [s for s in range(1, 41) if s != 5]
    assert forwarder.stats.rejected == 1


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) == 5.0
    assert parse_retry_after("junk") == 5.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("100000") == 600.0


def test_server_errors_back_off_exponentially_and_a_200_resets(spool: Spool) -> None:
    """HTTP's connect() proves nothing, so only an answered request may reset the backoff.

    Before the fix the backoff was reset by every connect(): a dead ingest was retried
    every ``initial_s`` for ever instead of backing off towards ``max_s``.
    """
    failing = threading.Event()
    failing.set()

    def script(items: list[dict[str, Any]]) -> web.Response:
        return web.Response(status=500, text="down") if failing.is_set() else ok(items)

    stop = threading.Event()
    with FakeIngest(script) as server:
        transport = HttpTransport(
            HttpConfig(url=server.url, token="t", timeout_s=5), TlsConfig(), b"{}"
        )
        forwarder = Forwarder(
            spool,
            transport,
            BatchConfig(max_readings=10, interval_s=0.2),
            ReconnectConfig(initial_s=0.05, max_s=0.4),
            stop=stop,
        )
        thread = threading.Thread(target=forwarder.run)
        thread.start()
        try:
            wait_for(lambda: len(server.requests) >= 7, 10, "seven failed attempts")
            stamps = [at for at, _, _ in server.requests[:7]]
            gaps = [later - earlier for earlier, later in itertools.pairwise(stamps)]
            # Delays are drawn from [d/2, d] for d = 0.05, 0.1, 0.2, 0.4, 0.4, 0.4: the
            # later gaps are at least 0.2 s; without escalation every one would be 0.05 s
            # at most.
            assert min(gaps[3:]) >= 0.19, gaps
            failing.clear()
            wait_for(lambda: spool.backlog == 0, 5, "the spool to drain")
        finally:
            stop.set()
            thread.join(10)
    assert forwarder._backoff.attempts == 0  # reset by the 200s
    assert sorted(server.stored) == list(range(1, 41))
