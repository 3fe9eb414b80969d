"""Bodies and parameters of the alert routes: rules, webhooks, alerts and their history.

A rule is one of three kinds, told apart by ``kind`` (a discriminated union): ``threshold``
(an aggregate of a metric over a window against a threshold, with a clear threshold for
hysteresis), ``no_data`` and ``offline``. What a rule answers with is what it was created
with, plus its id, version and times, so that a rule read can be sent back with PUT once
those four are left out. docs/alerts.md explains every field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    ModelWrapValidatorHandler,
    RootModel,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails

from api.models import METRIC_PATTERN, Cursor, DeviceId, Time

__all__ = [
    "Alert",
    "AlertEvent",
    "AlertHistoryPage",
    "AlertList",
    "AlertParams",
    "AlertRuleOut",
    "AlertRulePage",
    "AlertsParams",
    "HistoryParams",
    "ListRulesParams",
    "NoDataRuleOut",
    "OfflineRuleOut",
    "RuleDefinition",
    "RuleParams",
    "Severity",
    "SilenceBody",
    "ThresholdRuleOut",
]

Severity = Literal["info", "warning", "critical"]
RuleKind = Literal["threshold", "no_data", "offline"]
AlertState = Literal["ok", "pending", "firing", "resolved"]
EventName = Literal["pending", "firing", "resolved", "ok", "acknowledged", "silenced"]
_WEEK_S = 7 * 86_400
_MONTH_S = 30 * 86_400
_ID = Field(ge=1, le=2**62)


def _no_nul(value: str) -> str:
    """Refuse NUL characters: PostgreSQL text and jsonb cannot hold them."""
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


MetricName = Annotated[str, Field(pattern=f"^{METRIC_PATTERN}$", description="metric name")]
Text = Annotated[str, AfterValidator(_no_nul)]
LabelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
Labels = Annotated[
    dict[LabelName, Annotated[Text, Field(max_length=200)]],
    Field(max_length=20, description="names like Prometheus label names; values text"),
]
SelectorValue = Annotated[Text, Field(max_length=200)] | bool | int | FiniteFloat
Selector = Annotated[
    dict[Annotated[Text, Field(min_length=1, max_length=64)], SelectorValue],
    Field(min_length=1, max_length=20),
]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _RuleBase(_Strict):
    name: Text = Field(min_length=1, max_length=200)
    description: Text = Field("", max_length=2000)
    severity: Severity = "warning"
    labels: Labels = Field(default_factory=dict)
    device_id: DeviceId | None = Field(None, description="scope: this device only")
    selector: Selector | None = Field(
        None, description="scope: the devices whose metadata has all these keys and values"
    )
    renotify_s: int = Field(
        3600, ge=0, le=_MONTH_S, description="repeat a firing alert's notification (0: never)"
    )
    enabled: bool = True

    @model_validator(mode="after")
    def _one_scope(self) -> Any:
        if self.device_id is not None and self.selector is not None:
            raise ValueError(
                "device_id, selector: give one scope or neither (the whole fleet), not both"
            )
        return self


class ThresholdRule(_RuleBase):
    """An aggregate of a metric over a window, compared with a threshold."""

    kind: Literal["threshold"]
    metric: MetricName
    agg: Literal["avg", "min", "max", "last", "count"] = "avg"
    window_s: int = Field(300, ge=1, le=_WEEK_S, description="the aggregate's window, seconds")
    op: Literal[">", ">=", "<", "<=", "outside"]
    threshold: FiniteFloat | None = Field(None, description="breach: value op threshold")
    clear_threshold: FiniteFloat | None = Field(
        None, description="a firing alert resolves once value op clear_threshold no longer holds"
    )
    low: FiniteFloat | None = Field(None, description="op outside: breach below low")
    high: FiniteFloat | None = Field(None, description="op outside: breach above high")
    clear_low: FiniteFloat | None = Field(None, description="op outside: resolve at or above")
    clear_high: FiniteFloat | None = Field(None, description="op outside: resolve at or below")
    for_s: int = Field(0, ge=0, le=_WEEK_S, description="the breach must last this long")

    @model_validator(mode="after")
    def _thresholds(self) -> Any:
        if self.op == "outside":
            _outside_band(self)
            return self
        if (self.low, self.high, self.clear_low, self.clear_high) != (None, None, None, None):
            raise ValueError(
                f"low, high, clear_low, clear_high: only with op outside, not {self.op}"
            )
        if self.threshold is None:
            raise ValueError(f"threshold: required with op {self.op}")
        clear = self.threshold if self.clear_threshold is None else self.clear_threshold
        if self.op in (">", ">=") and clear > self.threshold:
            raise ValueError(f"clear_threshold: must not be above threshold with op {self.op}")
        if self.op in ("<", "<=") and clear < self.threshold:
            raise ValueError(f"clear_threshold: must not be below threshold with op {self.op}")
        return self


def _outside_band(rule: ThresholdRule) -> None:
    if rule.threshold is not None or rule.clear_threshold is not None:
        raise ValueError("threshold, clear_threshold: not with op outside (give low and high)")
    if rule.low is None or rule.high is None:
        raise ValueError("low, high: both required with op outside")
    if rule.low >= rule.high:
        raise ValueError("low: must be below high")
    clear_low = rule.low if rule.clear_low is None else rule.clear_low
    clear_high = rule.high if rule.clear_high is None else rule.clear_high
    if not rule.low <= clear_low <= clear_high <= rule.high:
        raise ValueError(
            "clear_low, clear_high: must lie within [low, high], clear_low not above clear_high"
        )


class NoDataRule(_RuleBase):
    """No reading of a metric (or of any metric) for a while."""

    kind: Literal["no_data"]
    metric: MetricName | None = Field(None, description="this metric; absent: any metric")
    for_s: int = Field(ge=1, le=_MONTH_S, description="fires after this long without a reading")


class OfflineRule(_RuleBase):
    """A device not heard from for ``factor`` times its reporting interval."""

    kind: Literal["offline"]
    factor: float = Field(3.0, gt=0, le=1000, description="intervals unheard before it fires")
    interval_s: int | None = Field(
        None,
        ge=1,
        le=_MONTH_S,
        description="the interval; absent: each device's expected_interval_s, else the default",
    )


_KINDS = ("threshold", "no_data", "offline")


def _untagged(error: ErrorDetails) -> InitErrorDetails:
    """Return an error of the union located as if the rule's own model had parsed the body."""
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        problem = ValueError(f"must be one of {', '.join(_KINDS)}")
        return {
            "type": "value_error",
            "loc": ("kind",),
            "input": error["input"],
            "ctx": {"error": problem},
        }
    loc = error["loc"][1:] if error["loc"] and error["loc"][0] in _KINDS else error["loc"]
    detail: InitErrorDetails = {"type": error["type"], "loc": loc, "input": error["input"]}
    if "ctx" in error:
        detail["ctx"] = error["ctx"]
    return detail


class RuleDefinition(
    RootModel[Annotated[ThresholdRule | NoDataRule | OfflineRule, Field(discriminator="kind")]]
):
    """An alert rule as it is created (POST) or replaced (PUT)."""

    @model_validator(mode="wrap")
    @classmethod
    def _errors_name_the_field(
        cls, value: Any, handler: ModelWrapValidatorHandler[RuleDefinition]
    ) -> RuleDefinition:
        # Without this, an error's location starts with the kind ("threshold.window_s").
        try:
            return handler(value)
        except ValidationError as exc:
            errors = [_untagged(error) for error in exc.errors()]
            raise ValidationError.from_exception_data(exc.title, errors) from None


class _RuleMeta(BaseModel):
    rule_id: int
    version: int = Field(description="1 when created, one more with each change")
    created_at: datetime
    updated_at: datetime


class ThresholdRuleOut(ThresholdRule, _RuleMeta):
    """A threshold rule as stored (clear thresholds filled in)."""


class NoDataRuleOut(NoDataRule, _RuleMeta):
    """A no-data rule as stored."""


class OfflineRuleOut(OfflineRule, _RuleMeta):
    """An offline rule as stored."""


AlertRuleOut = Annotated[
    ThresholdRuleOut | NoDataRuleOut | OfflineRuleOut, Field(discriminator="kind")
]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class AlertRulePage(_Out):
    """One page of rules, by id."""

    rules: list[AlertRuleOut]
    next_cursor: str | None


class _Params(_Strict):
    pass


class RuleParams(_Params):
    """The rule named in the path."""

    rule_id: int = _ID


class ListRulesParams(_Params):
    """Filters over the rules (by id)."""

    kind: RuleKind | None = Field(None, description="only rules of this kind")
    severity: Severity | None = Field(None, description="only rules of this severity")
    limit: int = Field(100, ge=1, le=1000, description="rules per page")
    cursor: Cursor = None


class AlertsParams(_Params):
    """Filters over the alerts now (newest first)."""

    state: Literal["firing", "pending"] = Field("firing", description="firing or pending")
    severity: Severity | None = Field(None, description="only alerts of this severity")
    device_id: str | None = Field(None, max_length=64, description="only this device")
    rule_id: int | None = Field(None, ge=1, le=2**62, description="only this rule")
    limit: int = Field(1000, ge=1, le=10_000, description="alerts per page")
    cursor: Cursor = None


class AlertParams(_Params):
    """The alert of a rule for a device."""

    rule_id: int = _ID
    device_id: DeviceId


class Alert(_Out):
    """An alert: the state of a rule for a device."""

    rule_id: int
    rule_name: str
    kind: RuleKind
    severity: Severity
    labels: dict[str, str]
    device_id: str
    state: AlertState
    since: datetime = Field(description="when it entered this state")
    pending_since: datetime | None
    firing_since: datetime | None
    resolved_at: datetime | None
    value: float | None = Field(description="the value that moved it to this state")
    notified_at: datetime | None
    acknowledged_at: datetime | None
    silenced_until: datetime | None


class AlertList(_Out):
    """Alerts now, and when the rules were last evaluated."""

    alerts: list[Alert]
    next_cursor: str | None
    evaluated_at: datetime | None = Field(description="the last evaluation; null before one")


class HistoryParams(_Params):
    """Filters over the history of alerts (newest first)."""

    rule_id: int | None = Field(None, ge=1, le=2**62, description="only this rule")
    device_id: str | None = Field(None, max_length=64, description="only this device")
    severity: Severity | None = Field(None, description="only this severity")
    event: EventName | None = Field(None, description="only this event")
    start: Time | None = Field(None, description="at or after (RFC 3339)")
    end: Time | None = Field(None, description="before (RFC 3339)")
    limit: int = Field(100, ge=1, le=1000, description="events per page")
    cursor: Cursor = None


class AlertEvent(_Out):
    """A transition of an alert, an acknowledgement or a silence."""

    event_id: int
    at: datetime
    event: EventName
    from_state: AlertState | None
    rule_id: int
    rule_version: int
    rule_name: str
    severity: Severity
    device_id: str
    value: float | None
    detail: str


class AlertHistoryPage(_Out):
    """One page of alert events, newest first."""

    events: list[AlertEvent]
    next_cursor: str | None


class SilenceBody(_Strict):
    """Until when the alert's notifications are held back; null lifts the silence."""

    until: Time | None = Field(description="RFC 3339, in the future; null: no silence")
