"""Webhook delivery from the outbox: at least once, in order per webhook, then dead.

Each round claims the due head of every enabled webhook's queue, POSTs them at once (one
per webhook), and records each answer: a 2xx delivers; anything else (a status, a refused
connection, a timeout) is tried again after a capped, jittered, doubling delay, or after
the receiver's ``Retry-After`` when that is longer, until ``max_attempts``; then the
notification is dead (``GET /v1/webhooks/{id}/deliveries?state=dead``) and the next one
goes. Rounds repeat while they deliver, so a backlog drains in order at once.

``now`` is a parameter, as for the evaluation, so that tests can let minutes pass.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, cast

import aiohttp
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from yarl import URL

from ingest.alerts import outbox_statements as sql
from ingest.alerts.metrics import ALERT_METRICS
from ingest.alerts.render import WebhookFormat, render_body, request_headers

__all__ = ["Deliverer", "DeliveryRound", "RetryPolicy", "retry_delay_s"]

log = logging.getLogger(__name__)

# A receiver's Retry-After beyond this is taken as this: a typo must not park a queue for
# a year.
_RETRY_AFTER_CAP_S = 3600.0
# What a claim adds to the delivery's own time limit, before another attempt may start.
_CLAIM_MARGIN_S = 5.0
_MAX_ROUNDS = 1000
_ERROR_CHARS = 200


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long a delivery may take and how failed ones are tried again."""

    timeout_s: float = 10.0
    first_s: float = 1.0
    max_s: float = 300.0
    max_attempts: int = 12


def retry_delay_s(attempts: int, policy: RetryPolicy) -> float:
    """Return the delay after the ``attempts``-th failure, capped, doubling and jittered.

    From ``first_s`` doubling up to ``max_s``, each drawn from its upper half: jitter spreads
    out webhooks that failed together.
    """
    ceiling = min(policy.max_s, policy.first_s * 2.0 ** min(attempts - 1, 60))
    return ceiling * random.uniform(0.5, 1.0)  # noqa: S311  (jitter, not crypto)


@dataclass(frozen=True, slots=True)
class _Claim:
    notification_id: int
    webhook_id: int
    idempotency_key: str
    alert: dict[str, Any]
    attempts: int
    url: str
    format: WebhookFormat
    secret: str


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int | None
    error: str | None
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRound:
    """What :meth:`Deliverer.deliver_due` did."""

    delivered: int = 0
    failed: int = 0
    dead: int = 0


def _retry_after_s(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (a number, or an HTTP date); None if absent."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        return max(0.0, (parsedate_to_datetime(text) - now).total_seconds())
    except (TypeError, ValueError):
        return None


def _where(url: str) -> str:
    """Return the webhook's host and port, for logs (a URL may carry credentials)."""
    parsed = URL(url)
    return f"{parsed.host}:{parsed.port}" if parsed.host else "an invalid URL"


class Deliverer:
    """Sends what the outbox holds through ``session``, by ``policy``."""

    def __init__(self, session: aiohttp.ClientSession, policy: RetryPolicy) -> None:
        self._session = session
        self._policy = policy

    async def deliver_due(self, conn: AsyncConnection[TupleRow], now: datetime) -> DeliveryRound:
        """Deliver every notification due at ``now``, webhook queues in order."""
        delivered = failed = dead = 0
        for _ in range(_MAX_ROUNDS):
            claims = await self._claim(conn, now)
            if not claims:
                break
            answers = await asyncio.gather(*(self._send(claim, now) for claim in claims))
            progress = False
            for claim, answer in zip(claims, answers, strict=True):
                outcome = await self._record(conn, claim, answer, now)
                ALERT_METRICS.deliveries.labels(outcome).inc()
                delivered += outcome == "delivered"
                failed += outcome == "failed"
                dead += outcome == "dead"
                progress |= outcome != "failed"
            if not progress:
                break
        return DeliveryRound(delivered, failed, dead)

    async def next_due(self, conn: AsyncConnection[TupleRow]) -> datetime | None:
        """When the next notification is due, or None when the outbox is empty."""
        row = await (await conn.execute(sql.NEXT_DUE)).fetchone()
        return None if row is None else cast("datetime | None", row[0])

    async def _claim(self, conn: AsyncConnection[TupleRow], now: datetime) -> list[_Claim]:
        claim_until = now + timedelta(seconds=self._policy.timeout_s + _CLAIM_MARGIN_S)
        cur = await conn.execute(sql.CLAIM_HEADS, {"now": now, "claim_until": claim_until})
        claims = []
        for row in await cur.fetchall():
            alert = cast("dict[str, Any]", row[3])
            fmt: WebhookFormat = "alertmanager" if row[6] == "alertmanager" else "json"
            claims.append(_Claim(row[0], row[1], row[2], alert, row[4], row[5], fmt, row[7]))
        return claims

    async def _send(self, claim: _Claim, now: datetime) -> _Answer:
        body = render_body(claim.alert, claim.idempotency_key, claim.format)
        headers = request_headers(body, claim.secret, claim.idempotency_key, claim.attempts)
        try:
            async with self._session.post(
                claim.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._policy.timeout_s),
            ) as resp:
                resp.release()
                if 200 <= resp.status < 300:
                    return _Answer(resp.status, None)
                retry_after = _retry_after_s(resp.headers.get("Retry-After"), now)
                return _Answer(resp.status, f"HTTP {resp.status} {resp.reason or ''}", retry_after)
        except TimeoutError:
            return _Answer(None, f"no answer within {self._policy.timeout_s:g} s")
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or type(exc.os_error).__name__
            return _Answer(None, f"cannot connect: {reason}"[:_ERROR_CHARS])
        except aiohttp.ClientError as exc:
            # The type only: the message of some (InvalidURL) is the URL, credentials and all.
            return _Answer(None, type(exc).__name__)

    async def _record(
        self, conn: AsyncConnection[TupleRow], claim: _Claim, answer: _Answer, now: datetime
    ) -> str:
        if answer.error is None:
            await conn.execute(
                sql.RECORD_DELIVERED,
                {"now": now, "status": answer.status, "id": claim.notification_id},
            )
            return "delivered"
        delay_s = retry_delay_s(claim.attempts, self._policy)
        if answer.retry_after_s is not None:
            delay_s = max(delay_s, min(answer.retry_after_s, _RETRY_AFTER_CAP_S))
        cur = await conn.execute(
            sql.RECORD_FAILED,
            {
                "now": now,
                "max_attempts": self._policy.max_attempts,
                "retry_at": now + timedelta(seconds=delay_s),
                "status": answer.status,
                "error": answer.error,
                "id": claim.notification_id,
            },
        )
        row = await cur.fetchone()
        if row is not None and row[0] == "dead":
            log.warning(
                "webhook %d (%s): notification %d is dead after %d attempts (%s); it is listed"
                " by GET /v1/webhooks/%d/deliveries?state=dead: check the receiver",
                claim.webhook_id,
                _where(claim.url),
                claim.notification_id,
                claim.attempts,
                answer.error,
                claim.webhook_id,
            )
            return "dead"
        log.info(
            "webhook %d (%s): delivery of notification %d failed (%s); next attempt in %.0f s",
            claim.webhook_id,
            _where(claim.url),
            claim.notification_id,
            answer.error,
            delay_s,
        )
        return "failed"
