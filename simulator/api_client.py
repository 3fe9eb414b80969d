"""The simulator's client of the query API: register devices, export readings, list rejects.

Every request carries the admin key. A 429 or 503 is waited out (Retry-After) and tried
again, up to a time limit; other failures raise :class:`~simulator.errors.ApiError`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_delay

from simulator.errors import ApiError
from simulator.messages import ts_from_ms, ts_to_ms

__all__ = ["QueryApi", "Reject", "StoredRow"]

_RETRY_FOR_S = 60.0
_RETRY_AFTER_MAX_S = 5.0
_EXPORT_DEVICES = 100


class _BusyError(Exception):
    """The API answered 429 or 503: wait as long as it says, then ask again."""

    def __init__(self, detail: str, retry_after: str | None) -> None:
        super().__init__(detail)
        try:
            wait_s = float(retry_after or 1)
        except ValueError:  # an HTTP date: not worth parsing for a wait of seconds
            wait_s = 1.0
        self.retry_after_s = min(max(wait_s, 0.0), _RETRY_AFTER_MAX_S)


def _retry_after(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome is not None else None
    return exc.retry_after_s if isinstance(exc, _BusyError) else 1.0


@dataclass(frozen=True, slots=True)
class StoredRow:
    """A reading as the export shows it (NDJSON: the value keeps its JSON type)."""

    device_id: str
    metric: str
    ts_ms: int
    value: object = None


@dataclass(frozen=True, slots=True)
class Reject:
    """A dead letter as ``GET /v1/rejects`` shows it."""

    device_id: str | None
    reason: str


def _iso(ts_ms: int) -> str:
    return ts_from_ms(ts_ms).isoformat().replace("+00:00", "Z")


class QueryApi:
    """An aiohttp session with the query API at ``base_url``, used as an async context."""

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout_s, connect=10)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise ApiError("the API client is already open")
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session; ApiError outside the context."""
        if self._session is None:
            raise ApiError("the API client is not open")
        return self._session

    async def _call(
        self, method: str, path: str, *, ok: Sequence[int] = (200,), **kwargs: Any
    ) -> tuple[int, bytes]:
        """Make a request, waiting out 429/503; return the status and body."""
        url = f"{self.base_url}{path}"
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_BusyError),
            wait=_retry_after,
            stop=stop_after_delay(_RETRY_FOR_S),
            reraise=True,
        )
        try:
            return await retrying(self._call_once, method, url, ok, **kwargs)
        except _BusyError as exc:
            raise ApiError(f"{method} {url}: {exc}") from exc

    async def _call_once(
        self, method: str, url: str, ok: Sequence[int], **kwargs: Any
    ) -> tuple[int, bytes]:
        try:
            async with self.session.request(method, url, **kwargs) as resp:
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(f"{method} {url}: {exc or type(exc).__name__}") from exc
        if resp.status in ok:
            return resp.status, body
        detail = f"{resp.status} {body.decode('utf-8', 'replace')[:200]}"
        if resp.status in (429, 503):
            raise _BusyError(detail, resp.headers.get("Retry-After"))
        raise ApiError(f"{method} {url}: {detail}")

    async def register(self, device_id: str, name: str, metadata: dict[str, str]) -> str:
        """Register a device (or rotate the token of an existing one); return its token."""
        status, body = await self._call(
            "POST",
            "/v1/devices",
            ok=(201, 409),
            json={"device_id": device_id, "name": name, "metadata": metadata},
        )
        if status == 409:
            _, body = await self._call("POST", f"/v1/devices/{device_id}/token")
        token: str = json.loads(body)["token"]
        return token

    async def export(
        self, device_ids: Sequence[str], start_ms: int, end_ms: int
    ) -> AsyncIterator[StoredRow]:
        """Yield every stored reading of the devices with ``start_ms <= ts < end_ms``."""
        for i in range(0, len(device_ids), _EXPORT_DEVICES):
            params = {
                "device": ",".join(device_ids[i : i + _EXPORT_DEVICES]),
                "start": _iso(start_ms),
                "end": _iso(end_ms),
                "format": "ndjson",
            }
            _, body = await self._call("GET", "/v1/export", params=params)
            for line in body.splitlines():
                row = json.loads(line)
                ts = datetime.fromisoformat(row["ts"])
                yield StoredRow(row["device_id"], row["metric"], ts_to_ms(ts), row["value"])

    async def rejects(self, since: datetime) -> list[Reject]:
        """Return the dead letters received since ``since``, all pages."""
        out: list[Reject] = []
        params = {
            "start": since.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "limit": "1000",
        }
        while True:
            _, body = await self._call("GET", "/v1/rejects", params=params)
            page = json.loads(body)
            out += [Reject(d["device_id"], d["reason"]) for d in page["dead_letters"]]
            if not page["next_cursor"]:
                return out
            params["cursor"] = page["next_cursor"]

    async def visible(self, device_id: str, metric: str, ts_ms: int) -> bool:
        """Whether the reading of ``device_id`` and ``metric`` at ``ts_ms`` is stored."""
        params = {"metric": metric, "start": _iso(ts_ms), "end": _iso(ts_ms + 1), "limit": "1"}
        _, body = await self._call("GET", f"/v1/devices/{device_id}/readings", params=params)
        return bool(json.loads(body)["readings"])
