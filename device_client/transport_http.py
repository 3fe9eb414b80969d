"""HTTP transport: each batch is one ``POST /v1/telemetry`` with the device's bearer token.

``200`` acknowledges the whole batch; items it lists as ``rejected`` are refused for good and
are dropped (counted and logged). ``429``/``503`` carry Retry-After. Network errors and
other ``5xx`` are retried with backoff. ``400``/``413``/``415`` refuse the batch as a whole.

Before its first batch the agent reports its attributes (``PUT /v1/attributes``, once per
start); until that succeeds no batch is sent, and a report the server refuses is logged
and not repeated.
"""

from __future__ import annotations

import email.utils
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from http.client import HTTPException

from device_client.config import HttpConfig, TlsConfig
from device_client.errors import (
    BatchRejectedError,
    ResourceStateError,
    RetryLaterError,
    TransportError,
)
from device_client.tls import build_ssl_context
from device_client.transport import Batch, Outcome, PollResult, Rejection

__all__ = ["HttpTransport", "parse_retry_after"]

log = logging.getLogger(__name__)

_DEFAULT_RETRY_AFTER_S = 5.0
_MAX_RETRY_AFTER_S = 600.0
_MAX_RESPONSE = 1024 * 1024


def parse_retry_after(value: str | None, default_s: float = _DEFAULT_RETRY_AFTER_S) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped."""
    if not value:
        return default_s
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default_s
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would re-send the token to another place: treat it as an error."""

    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None


class HttpTransport:
    """One request at a time; the outcome is ready as soon as :meth:`submit` returns."""

    name = "http"
    connect_reaches_server = False

    def __init__(self, config: HttpConfig, tls: TlsConfig, attributes: bytes) -> None:
        self.config = config
        self._attributes: bytes | None = attributes
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if config.url.startswith("https:"):
            context: ssl.SSLContext = build_ssl_context(tls)
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)
        self._outcomes: list[Outcome] = []
        self._connected = False
        self._closed = False

    @property
    def connected(self) -> bool:
        """HTTP has no connection to lose; true between connect() and a failure."""
        return self._connected

    @property
    def in_flight(self) -> int:
        """Always 0: a request is complete when submit() returns."""
        return 0

    def capacity(self) -> int:
        """One batch at a time, once the previous outcome has been collected."""
        return 1 if self._connected and not self._outcomes else 0

    def connect(self) -> None:
        """Mark the transport usable (requests open their own connections)."""
        if self._closed:
            raise ResourceStateError("the HTTP transport is closed")
        self._connected = True

    def submit(self, batch: Batch) -> None:
        """POST ``batch``; raise TransportError (or a subclass) unless the server took it."""
        if self._attributes is not None:
            self._report_attributes(self._attributes)
        body = batch.payload()
        started = time.monotonic()
        status, text = self._request("POST", self.config.url, body)
        if status != 200:
            self._connected = False
            raise TransportError(f"POST {self.config.url}: unexpected status {status}")
        log.debug(
            "POST %d reading-sets (%d bytes) in %.3f s",
            len(batch.rows),
            len(body),
            time.monotonic() - started,
        )
        self._outcomes.append(Outcome(batch, self._rejections(batch, text)))

    def _report_attributes(self, attributes: bytes) -> None:
        """PUT the attributes; a refusal is logged and dropped, anything else raised."""
        url = self.config.attributes_url
        try:
            # A server without the endpoint (404, 405) refuses it too: an older platform.
            self._request("PUT", url, attributes, refused=(400, 404, 405, 413, 415))
        except BatchRejectedError as exc:
            log.warning("the server refused the attributes, which are not sent again: %s", exc)
        else:
            log.info("attributes reported to %s", url)
        self._attributes = None

    def _request(
        self, method: str, url: str, body: bytes, refused: tuple[int, ...] = (400, 413, 415)
    ) -> tuple[int, bytes]:
        """Send one request; return its status and body, or raise as :meth:`_raise_for`.

        ``refused``: the statuses that refuse the body for good (BatchRejectedError).
        """
        request = urllib.request.Request(  # noqa: S310  (URL scheme checked in config)
            url,
            data=body,
            method=method,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.config.token}",
            },
        )
        try:
            with self._opener.open(request, timeout=self.config.timeout_s) as response:
                return response.status, response.read(_MAX_RESPONSE)
        except urllib.error.HTTPError as exc:
            with exc:
                self._raise_for(
                    exc.code,
                    exc.headers.get("Retry-After"),
                    exc.read(2048),
                    f"{method} {url}",
                    refused,
                )
            raise  # pragma: no cover  (_raise_for always raises)
        except (urllib.error.URLError, HTTPException, OSError) as exc:
            self._connected = False
            reason = getattr(exc, "reason", exc)
            raise TransportError(f"{method} {url} failed: {reason}") from exc

    def _raise_for(
        self,
        status: int,
        retry_after: str | None,
        body: bytes,
        where: str,
        refused: tuple[int, ...],
    ) -> None:
        detail = body.decode("utf-8", "replace").strip().replace("\n", " ")[:200]
        if status in (429, 503):
            raise RetryLaterError(
                f"{where}: {status}, retry after {parse_retry_after(retry_after):g} s",
                parse_retry_after(retry_after),
            )
        if status in refused:
            raise BatchRejectedError(f"{where}: {status} {detail}", status)
        self._connected = False
        if status in (401, 403):
            raise TransportError(f"{where}: {status}: the device token was refused")
        raise TransportError(f"{where}: {status} {detail}")

    @staticmethod
    def _rejections(batch: Batch, text: bytes) -> list[Rejection]:
        try:
            doc = json.loads(text)
        except ValueError:
            log.warning("200 with a body that is not JSON; taking the batch as accepted")
            return []
        rejected = doc.get("rejected", []) if isinstance(doc, dict) else []
        out: list[Rejection] = []
        for item in rejected if isinstance(rejected, list) else []:
            if not isinstance(item, dict):
                continue
            index = item.get("index")
            if isinstance(index, int) and 0 <= index < len(batch.rows):
                out.append(
                    Rejection(
                        seq=batch.rows[index].seq,
                        reason=str(item.get("reason", "unknown")),
                        detail=str(item.get("detail", "")),
                    )
                )
        return out

    def poll(self, timeout_s: float) -> PollResult:  # noqa: ARG002  (the outcome is ready)
        """Hand over the outcome of the last request."""
        outcomes, self._outcomes = self._outcomes, []
        return PollResult(outcomes)

    def drop(self) -> None:
        """Forget any uncollected outcome (the forwarder re-reads from the spool)."""
        self._outcomes.clear()
        self._connected = False

    def close(self) -> None:
        """Refuse further use; nothing stays open between requests."""
        self._closed = True
        self.drop()
