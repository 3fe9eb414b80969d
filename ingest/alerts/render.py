"""The body and headers of a delivery, rendered from the outbox's alert document.

The rendering is a pure function of the stored document, so every retry of a notification
sends the same bytes with the same ``Idempotency-Key`` and the same signature. Two formats:

- ``json``: the document itself, with its idempotency key (docs/alerts.md has an example);
- ``alertmanager``: a list of one alert as Prometheus Alertmanager's ``POST /api/v2/alerts``
  takes it (labels, annotations, ``startsAt``, ``endsAt`` once resolved, ``generatorURL``),
  so that a webhook pointed at Alertmanager routes the alert through it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from core.webhook_signature import SIGNATURE_HEADER, sign

__all__ = ["USER_AGENT", "WebhookFormat", "render_body", "request_headers"]

WebhookFormat = Literal["json", "alertmanager"]
USER_AGENT = "telemetry-alerts/1"


def _alertmanager(alert: Mapping[str, Any]) -> list[dict[str, Any]]:
    rule = alert["rule"]
    labels = {str(k): str(v) for k, v in rule["labels"].items()} | {
        "alertname": rule["name"],
        "severity": rule["severity"],
        "device_id": alert["device_id"],
        "rule_id": str(rule["rule_id"]),
    }
    value = alert["value"]
    annotations = {
        "summary": f"{rule['name']} on {alert['device_id']}",
        "value": "" if value is None else repr(float(value)),
    }
    if rule["description"]:
        annotations["description"] = rule["description"]
    body: dict[str, Any] = {
        "labels": labels,
        "annotations": annotations,
        "startsAt": alert["firing_since"] or alert["at"],
        "generatorURL": alert["links"]["alert"],
    }
    if alert["status"] == "resolved":
        body["endsAt"] = alert["resolved_at"] or alert["at"]
    return [body]


def render_body(alert: Mapping[str, Any], idempotency_key: str, fmt: WebhookFormat) -> bytes:
    """Return the body of a delivery of ``alert`` in ``fmt`` (compact JSON, sorted keys)."""
    document: object = (
        _alertmanager(alert)
        if fmt == "alertmanager"
        else dict(alert) | {"idempotency_key": idempotency_key}
    )
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def request_headers(body: bytes, secret: str, idempotency_key: str, attempt: int) -> dict[str, str]:
    """Return the headers of a delivery: content type, idempotency key, signature, attempt."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Idempotency-Key": idempotency_key,
        SIGNATURE_HEADER: sign(secret, body),
        "X-Telemetry-Attempt": str(attempt),
    }
