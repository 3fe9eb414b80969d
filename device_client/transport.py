"""What the forwarder needs from a transport, and the values they exchange.

A transport takes batches (:meth:`Transport.submit`), and reports in :meth:`Transport.poll`
which of them the server acknowledged. MQTT keeps a window of messages in flight; HTTP has
one request at a time. Connection handling (when to retry) is the forwarder's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from device_client.errors import TransportError
from device_client.spool import SpoolRow
from device_client.wire import encode_batch

__all__ = ["Batch", "Outcome", "PollResult", "Rejection", "Transport"]


@dataclass(frozen=True)
class Batch:
    """Consecutive spooled reading-sets sent as one message or request."""

    rows: Sequence[SpoolRow]

    @property
    def first_seq(self) -> int:
        """Seq of the oldest reading-set in the batch."""
        return self.rows[0].seq

    @property
    def last_seq(self) -> int:
        """Seq of the newest reading-set in the batch."""
        return self.rows[-1].seq

    def payload(self) -> bytes:
        """Encode the batch as the JSON array to send."""
        return encode_batch([row.body for row in self.rows])


@dataclass(frozen=True)
class Rejection:
    """One reading-set the server refused for good (it is dropped, counted and logged)."""

    seq: int
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Outcome:
    """The server acknowledged ``batch``; ``rejected`` names the items it refused."""

    batch: Batch
    rejected: Sequence[Rejection] = ()


@dataclass
class PollResult:
    """Acknowledgements that arrived, and the error that ended the connection, if any."""

    outcomes: list[Outcome] = field(default_factory=list)
    error: TransportError | None = None


class Transport(Protocol):
    """The forwarder's view of MQTT and HTTP."""

    name: str
    # Whether a successful connect() proves the server is there (MQTT's CONNACK). HTTP's
    # connect() opens nothing, so only an answered request may reset the backoff.
    connect_reaches_server: bool

    @property
    def connected(self) -> bool:
        """Whether batches can be submitted now."""

    @property
    def in_flight(self) -> int:
        """Batches submitted and not yet acknowledged."""

    def capacity(self) -> int:
        """How many more batches may be submitted before acknowledgements come back."""

    def connect(self) -> None:
        """Open a connection; raise TransportError if that fails."""

    def submit(self, batch: Batch) -> None:
        """Send ``batch``; raise TransportError if it cannot be sent."""

    def poll(self, timeout_s: float) -> PollResult:
        """Wait up to ``timeout_s`` for acknowledgements."""

    def drop(self) -> None:
        """Abandon the connection and forget what is in flight (the spool still has it)."""

    def close(self) -> None:
        """Say goodbye cleanly (MQTT: offline status) and release everything."""
