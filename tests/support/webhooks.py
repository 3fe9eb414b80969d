"""A webhook receiver in a thread, for tests that run the platform as real processes.

It records every POST (its idempotency key, signature check and body) and answers 200, or
holds its answer back until ``released`` is set again, as a stuck receiver would.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from core.webhook_signature import SIGNATURE_HEADER, verify

__all__ = ["Delivery", "WebhookReceiver"]

_HOLD_LIMIT_S = 60.0


@dataclass(frozen=True)
class Delivery:
    """One POST as it arrived."""

    key: str
    signed: bool
    body: Any


class WebhookReceiver:
    """Listens on ``port`` (0: a free one) once started; ``url`` is where to send."""

    def __init__(self, secret: str, port: int = 0) -> None:
        self.secret = secret
        self.port = port
        self.seen: list[Delivery] = []
        self.released = threading.Event()
        self.released.set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """Where deliveries are to be sent."""
        return f"http://127.0.0.1:{self.port}/hook"

    def deliveries(self) -> list[Delivery]:
        """Every POST received so far, in the order they arrived."""
        with self._lock:
            return list(self.seen)

    def start(self) -> Self:
        """Listen (on ``port``, or a free one that ``port`` then names) in a thread."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signed = verify(receiver.secret, raw, self.headers.get(SIGNATURE_HEADER))
                got = Delivery(self.headers.get("Idempotency-Key", ""), signed, json.loads(raw))
                with receiver._lock:
                    receiver.seen.append(got)
                receiver.released.wait(_HOLD_LIMIT_S)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender was gone by the time it was released

            def log_message(self, *_args: object) -> None:
                """Keep the test's output clean: the deliveries are recorded instead."""

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Release any held answer and stop listening."""
        self.released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
