"""Bodies and parameters of the webhook routes: webhooks, their secrets and deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.alert_models import Text
from api.models import Cursor

__all__ = [
    "DeliveriesParams",
    "Delivery",
    "DeliveryPage",
    "Webhook",
    "WebhookBody",
    "WebhookCreated",
    "WebhookList",
    "WebhookParams",
    "WebhookSecret",
]

DeliveryState = Literal["pending", "delivered", "dead"]
_ID = Field(ge=1, le=2**62)


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError("must not contain spaces or control characters")
    return value


class WebhookBody(_Strict):
    """Where notifications go, and in which format."""

    url: Annotated[str, AfterValidator(_http_url)] = Field(
        max_length=2000, description="receives a POST per notification"
    )
    name: Text = Field("", max_length=200)
    format: Literal["json", "alertmanager"] = Field(
        "json", description="json, or alertmanager (Alertmanager's POST /api/v2/alerts body)"
    )
    enabled: bool = True


class WebhookParams(_Strict):
    """The webhook named in the path."""

    webhook_id: int = _ID


class Webhook(_Out):
    """A webhook and its queue (the secret is never shown again)."""

    webhook_id: int
    name: str
    url: str
    format: Literal["json", "alertmanager"]
    enabled: bool
    created_at: datetime
    updated_at: datetime
    pending: int = Field(description="notifications waiting to be delivered")
    dead: int = Field(description="notifications given up on (see its deliveries)")


class WebhookCreated(Webhook):
    """A new webhook and the secret that signs its deliveries, shown this once."""

    secret: str


class WebhookSecret(_Out):
    """A webhook's new signing secret, shown this once; the old one stops at once."""

    webhook_id: int
    secret: str


class WebhookList(_Out):
    """Every webhook, by id."""

    webhooks: list[Webhook]


class DeliveriesParams(_Strict):
    """A webhook's notifications, newest first."""

    webhook_id: int = _ID
    state: DeliveryState | None = Field(None, description="only notifications in this state")
    limit: int = Field(100, ge=1, le=1000, description="notifications per page")
    cursor: Cursor = None


class Delivery(_Out):
    """One notification to one webhook and how its delivery went."""

    notification_id: int
    idempotency_key: str
    created_at: datetime
    status: Literal["firing", "resolved"]
    repeat: bool
    rule_id: int
    device_id: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None = Field(description="the receiver's last HTTP status")
    last_error: str | None
    done_at: datetime | None


class DeliveryPage(_Out):
    """One page of a webhook's notifications, newest first."""

    deliveries: list[Delivery]
    next_cursor: str | None
