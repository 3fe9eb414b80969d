"""The forwarder: moves reading-sets from the spool to the server, oldest first.

It runs on a thread of its own as a small state machine::

    DISCONNECTED ──connect()──► CONNECTED ──error──► BACKING_OFF ──delay──► DISCONNECTED
         ▲                          │                                          │
         └───────── stop ◄──────────┴──────────────────────────────────────────┘

On every (re)connection it starts again from the oldest row in the spool: what was in
flight when a connection broke is sent again, never skipped. Acknowledged rows are
handed to the spool, which deletes them with its next commit. Replay is paced by a token
bucket (``replay_rate_per_s``) so that a long backlog does not flood a recovering server.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

from device_client.backoff import Backoff, TokenBucket
from device_client.config import BatchConfig, ReconnectConfig
from device_client.errors import BatchRejectedError, RetryLaterError, TransportError
from device_client.spool import Spool
from device_client.transport import Batch, Outcome, Transport

__all__ = ["Forwarder", "ForwarderStats", "LinkState"]

log = logging.getLogger(__name__)

_IDLE_POLL_S = 0.5
_STOP_DRAIN_S = 3.0


class LinkState(enum.Enum):
    """Where the forwarder's connection stands."""

    DISCONNECTED = "disconnected"
    CONNECTED = "connected"
    BACKING_OFF = "backing_off"
    STOPPED = "stopped"


@dataclass
class ForwarderStats:
    """Counters since start, for the periodic progress log."""

    sent: int = 0
    rejected: int = 0
    batches: int = 0
    connects: int = 0
    failures: int = 0
    last_error: str | None = None


class Forwarder:
    """Sends what the spool holds through ``transport`` until ``stop`` is set."""

    def __init__(
        self,
        spool: Spool,
        transport: Transport,
        batch: BatchConfig,
        reconnect: ReconnectConfig,
        *,
        stop: threading.Event,
        wake: threading.Event | None = None,
        on_crash: Callable[[], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.spool = spool
        self.transport = transport
        self.batch = batch
        self.stop = stop
        self.wake = wake or threading.Event()
        self.on_crash = on_crash
        self.crashed: BaseException | None = None
        self.state = LinkState.DISCONNECTED
        self.stats = ForwarderStats()
        self._backoff = Backoff(reconnect.initial_s, reconnect.max_s, rng=rng)
        self._bucket = TokenBucket(batch.replay_rate_per_s, burst=batch.replay_rate_per_s)
        self._batch_limit = batch.max_readings
        self._cursor = 0
        self._delay_s = 0.0
        # Acks are committed with the sampler's next batch; this bounds how long they wait.
        self._ack_flush_s = max(2.0 * batch.interval_s, 5.0)

    def run(self) -> None:
        """Thread body: connect, send, back off and retry until stopped; then say goodbye."""
        try:
            while not self.stop.is_set():
                if self.state is LinkState.DISCONNECTED:
                    self._connect()
                elif self.state is LinkState.BACKING_OFF:
                    self.stop.wait(self._delay_s)
                    self.state = LinkState.DISCONNECTED
                else:
                    self._step()
            self._finish()
        except Exception as exc:
            # A bug here must stop the agent (systemd restarts it), not leave it sampling
            # into a spool that nobody drains.
            log.exception("forwarder failed")
            self.crashed = exc
            if self.on_crash is not None:
                self.on_crash()
        finally:
            self.state = LinkState.STOPPED

    def _connect(self) -> None:
        try:
            self.transport.connect()
        except TransportError as exc:
            self._fail(exc)
            return
        self.state = LinkState.CONNECTED
        self.stats.connects += 1
        if self.transport.connect_reaches_server:
            self._backoff.reset()
        self._cursor = 0

    def _fail(self, exc: TransportError, delay_s: float | None = None) -> None:
        self.stats.failures += 1
        self.stats.last_error = str(exc)
        self.transport.drop()
        # Pending acks must reach the disk before the cursor rewinds to the oldest row.
        self.spool.note_error(str(exc))
        self.spool.flush()
        self._cursor = 0
        self._delay_s = self._backoff.next_delay() if delay_s is None else delay_s
        self.state = LinkState.BACKING_OFF
        log.warning("%s; retrying in %.1f s", exc, self._delay_s)

    def _step(self) -> None:
        submitted = 0
        try:
            submitted = self._fill()
        except RetryLaterError as exc:
            # The server is up and asked for a pause: no need to escalate the backoff.
            self._fail(exc, delay_s=exc.retry_after_s * random.uniform(1.0, 1.1))  # noqa: S311
            return
        except BatchRejectedError as exc:
            self._shrink_or_drop(exc)
            return
        except TransportError as exc:
            self._fail(exc)
            return
        # PUBACKs wake the poll early; the bucket's wait paces a replay that ran out of tokens.
        timeout_s = min(_IDLE_POLL_S, self._bucket.wait_s(1.0)) or _IDLE_POLL_S
        if not submitted and not self.transport.in_flight and self.transport.name != "mqtt":
            # HTTP has no socket to wait on: sleep until the sampler stores something.
            self.wake.wait(timeout_s)
            self.wake.clear()
            timeout_s = 0.0
        result = self.transport.poll(timeout_s)
        for outcome in result.outcomes:
            self._acknowledged(outcome)
        if isinstance(result.error, BatchRejectedError):  # a receipt refused a whole batch
            self._shrink_or_drop(result.error)
            return
        if result.error is not None:
            self._fail(result.error)
            return
        self.spool.flush(self._ack_flush_s)

    def _fill(self, *, stopping: bool = False) -> int:
        submitted = 0
        while self.transport.capacity() > 0 and (stopping or not self.stop.is_set()):
            if self._bucket.available() <= 0:
                break
            rows = self.spool.read_after(self._cursor, self._batch_limit)
            if not rows:
                break
            batch = Batch(rows)
            self.transport.submit(batch)
            self._bucket.spend(len(rows))
            self._cursor = batch.last_seq
            submitted += 1
        return submitted

    def _acknowledged(self, outcome: Outcome) -> None:
        batch = outcome.batch
        rejected = len(outcome.rejected)
        for item in outcome.rejected:
            log.error("server rejected seq %d: %s %s", item.seq, item.reason, item.detail)
        self.spool.ack(
            batch.first_seq, batch.last_seq, sent=len(batch.rows) - rejected, rejected=rejected
        )
        # The server answered: the link works. For HTTP this, not connect(), is the proof;
        # resetting on connect() would retry a dead server at initial_s forever.
        self._backoff.reset()
        self.stats.sent += len(batch.rows) - rejected
        self.stats.rejected += rejected
        self.stats.batches += 1
        if self._batch_limit < self.batch.max_readings:
            self._batch_limit = min(self.batch.max_readings, self._batch_limit * 2)

    def _shrink_or_drop(self, exc: BatchRejectedError) -> None:
        """Split a refused batch until the culprit stands alone, then drop it (logged)."""
        self.transport.drop()
        # Once earlier acks are deleted, what is sent again starts at the oldest row: the
        # refused batch (HTTP sends one at a time) or one before it (MQTT's window).
        self.spool.flush()
        rows = self.spool.read_after(0, 1)
        if self._batch_limit > 1:
            self._batch_limit = max(1, self._batch_limit // 2)
            log.warning("%s; retrying with batches of %d", exc, self._batch_limit)
        elif rows:
            seq = rows[0].seq
            log.error("%s; dropping seq %d as rejected", exc, seq)
            self.spool.ack(seq, seq, sent=0, rejected=1)
            self.spool.flush()
            self.stats.rejected += 1
        self.state = LinkState.DISCONNECTED
        self._cursor = 0

    def _finish(self) -> None:
        """Send what is left (the sampler's last batch) for a moment, then disconnect cleanly."""
        deadline = time.monotonic() + _STOP_DRAIN_S
        while self.state is LinkState.CONNECTED and time.monotonic() < deadline:
            try:
                submitted = self._fill(stopping=True)
            except TransportError:
                break
            if not submitted and not self.transport.in_flight:
                break
            result = self.transport.poll(0.1)
            for outcome in result.outcomes:
                self._acknowledged(outcome)
            if result.error is not None:
                break
        self.transport.close()
        self.spool.flush()
