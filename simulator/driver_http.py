"""HTTP driver: each message is one ``POST /v1/telemetry`` with the device's token.

One aiohttp session with a bounded connection pool serves the whole fleet. A 200 is the
acknowledgement (after commit); its ``rejected`` list is counted. A 400 is the answer a
malformed message must get. 429 and 503 raise :class:`RetryLaterError` with Retry-After;
network errors and other 5xx raise :class:`DriverError` (the device sends again).
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Self

import aiohttp

from simulator.errors import DriverError, RefusedError, RetryLaterError
from simulator.messages import Message

__all__ = ["HttpDriver"]


class HttpDriver:
    """Posts messages to the ingest's HTTP endpoint at ``ingest_url``."""

    def __init__(
        self, ingest_url: str, *, max_connections: int = 64, timeout_s: float = 30.0
    ) -> None:
        self.url = ingest_url.rstrip("/") + "/v1/telemetry"
        self.max_connections = max_connections
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise DriverError("the HTTP driver is already open")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_connections),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
        )
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def send(self, token: str, message: Message) -> int:
        """Post ``message``; return how many items the server rejected (400: one)."""
        if self._session is None:
            raise DriverError("the HTTP driver is not open")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": message.content_type}
        try:
            async with self._session.post(self.url, data=message.payload, headers=headers) as resp:
                body = await resp.read()
                status, retry_after = resp.status, resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DriverError(f"POST {self.url}: {exc or type(exc).__name__}") from exc
        if status == 200:
            return len(json.loads(body).get("rejected", []))
        if status == 400 and message.whole_reject:
            return 1
        if status in (429, 503):
            raise RetryLaterError(f"POST {self.url}: {status}", float(retry_after or 1))
        detail = body.decode("utf-8", "replace")[:200]
        if 400 <= status < 500:
            raise RefusedError(f"POST {self.url}: {status} {detail}")
        raise DriverError(f"POST {self.url}: {status} {detail}")
