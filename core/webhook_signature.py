"""The signature of a webhook delivery: HMAC-SHA256 of the body with the webhook's secret.

The ingest signs what it delivers; a receiver (the demo's, or yours) checks with
:func:`verify`, which compares in constant time. The header carries the algorithm, as
GitHub's ``X-Hub-Signature-256`` does: ``X-Telemetry-Signature: sha256=<64 hex digits>``.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "sign", "verify"]

SIGNATURE_HEADER = "X-Telemetry-Signature"
_PREFIX = "sha256="


def sign(secret: str, body: bytes) -> str:
    """Return the signature header's value for ``body``."""
    return _PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` under ``secret`` (constant time)."""
    if header is None:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())
