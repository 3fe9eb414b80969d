"""Request and response bodies of the query API, validated at the boundary with pydantic.

Parameter models hold a route's path and query parameters together: a field named in the
path template is a path parameter, the others are query parameters (see ``api.routing``).
Comma-separated lists (``metric=a,b``, ``agg=avg,max``) stay strings in the schema and are
split by the validators here, so that a bad item gets a message that names it; a parameter
given as a list (``tag``) is repeated instead (``tag=a:1&tag=b:2``).

A reading's value is a number, a boolean or a string (:data:`Value`), and keeps its type in
every answer; ``unit`` is the device's unit of the metric where it gave one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

# pydantic takes TypedDicts from typing only on Python 3.12 and later.
from typing_extensions import TypedDict

from api.tags import Tags

__all__ = [
    "AGGREGATES",
    "Aggregate",
    "BucketPoint",
    "BucketSeries",
    "BucketedReadings",
    "CreateDevice",
    "DeadLetterOut",
    "DeadLetterPage",
    "Device",
    "DeviceCreated",
    "DeviceList",
    "DeviceParams",
    "DeviceSort",
    "DeviceStatus",
    "ErrorBody",
    "ExportParams",
    "Fleet",
    "FleetLatestPage",
    "FleetLatestParams",
    "Health",
    "LatestValue",
    "LatestValues",
    "ListDevicesParams",
    "NoParams",
    "RawReading",
    "RawReadings",
    "Readiness",
    "ReadingsParams",
    "RejectsParams",
    "TokenRotated",
    "Value",
    "ValueType",
    "metric_names",
    "no_nul",
]

DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
METRIC_PATTERN = r"[A-Za-z][A-Za-z0-9_.:-]{0,63}"
_METRIC_RE = re.compile(METRIC_PATTERN)
# RFC 3339 date-time: pydantic alone would also take epoch numbers and dates without time.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)

# Far enough from datetime's limits that ranges and buckets computed from them cannot overflow.
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_OUT_OF_RANGE = "time out of range (years 1900 to 9000)"

Aggregate = Literal[
    "avg", "min", "max", "count", "sum", "first", "last", "increase", "rate", "states"
]  # fmt: skip
AGGREGATES: tuple[Aggregate, ...] = (
    "avg", "min", "max", "count", "sum", "first", "last", "increase", "rate", "states"
)  # fmt: skip
ValueType = Literal["number", "boolean", "string"]
#: A reading's value; booleans before numbers, so that true stays true.
Value = bool | float | str
DeviceStatus = Literal["online", "offline", "never_seen"]
DeviceSort = Literal["device_id", "-device_id", "last_seen", "-last_seen", "seq_gaps", "-seq_gaps"]


def _rfc3339(value: object) -> object:
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError(f"{value!r} is not an RFC 3339 time such as 2026-11-21T10:00:00Z")
    return value


def _to_utc(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(_OUT_OF_RANGE) from exc
    if not _EARLIEST <= utc <= _LATEST:
        raise ValueError(_OUT_OF_RANGE)
    return utc


def _metric_list(value: str | None) -> str | None:
    if value is not None:
        metric_names(value)
    return value


def _agg_list(value: str) -> str:
    for item in value.split(","):
        if item not in AGGREGATES:
            raise ValueError(f"unknown agg {item!r}; choose from {','.join(AGGREGATES)}")
    return value


def no_nul(value: Any) -> Any:
    """Refuse NUL characters anywhere: PostgreSQL text and jsonb cannot hold them."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("NUL characters are not allowed")
    elif isinstance(value, dict):
        for key, item in value.items():
            no_nul(key)
            no_nul(item)
    elif isinstance(value, list):
        for item in value:
            no_nul(item)
    return value


def metric_names(value: str) -> tuple[str, ...]:
    """Split ``a,b`` into metric names; ValueError naming the first bad one."""
    names = tuple(dict.fromkeys(value.split(",")))
    for name in names:
        if not _METRIC_RE.fullmatch(name):
            raise ValueError(f"{name!r} is not a metric name")
    return names


Time = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_to_utc)]
DeviceId = Annotated[str, Field(pattern=DEVICE_ID_PATTERN, description="device id")]
MetricList = Annotated[
    str | None,
    AfterValidator(_metric_list),
    Field(description="metric name, or several separated by commas (default: all)"),
]
Cursor = Annotated[
    str | None, Field(max_length=200, description="`next_cursor` of the previous page")
]


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NoParams(_Params):
    """A route without parameters."""


class DeviceParams(_Params):
    """The device named in the path."""

    device_id: DeviceId


class ListDevicesParams(_Params):
    """Filter, sort and page through the registry (by device id unless ``sort`` says)."""

    status: DeviceStatus | None = Field(None, description="only devices in this status")
    search: Annotated[str | None, AfterValidator(no_nul)] = Field(
        None,
        min_length=1,
        max_length=64,
        description="only devices whose id or name contains this text (case-insensitive)",
    )
    sort: DeviceSort = Field(
        "device_id",
        description="order by this field, descending with a leading `-`, ties by device id;"
        " by `last_seen`, devices never seen come first",
    )
    limit: int = Field(100, ge=1, le=1000, description="devices per page")
    cursor: Cursor = None
    tag: Tags = []


class ReadingsParams(_Params):
    """Raw readings (keyset-paginated) or, with ``bucket``, aggregates per time bucket."""

    device_id: DeviceId
    metric: MetricList = None
    start: Time | None = Field(None, description="RFC 3339, inclusive (default: end - 1 day)")
    end: Time | None = Field(None, description="RFC 3339, exclusive (default: now)")
    limit: int = Field(1000, ge=1, le=10_000, description="raw readings per page")
    cursor: Cursor = None
    bucket: str | None = Field(
        None,
        pattern=r"^[1-9][0-9]{0,5}[smhd]$",
        description="bucket width from 1s to 1d (e.g. 30s, 1m, 15m, 1h, 1d): aggregate",
    )
    agg: Annotated[str, AfterValidator(_agg_list)] = Field(
        "avg,min,max,count",
        max_length=200,
        description=f"aggregates, comma-separated, from {','.join(AGGREGATES)}; increase and"
        " rate (per second) treat the metric as a monotonic counter, a drop being a reset;"
        " each series gets those that apply to its type (numbers: all but states; booleans:"
        " avg as the share of true, min, max, count, sum, first, last, states; strings:"
        " count, first, last, states)",
    )


class ExportParams(_Params):
    """Readings of one or more devices in a time range, streamed."""

    device: str = Field(
        max_length=4000,
        description="device id, or several separated by commas",
    )
    metric: MetricList = None
    start: Time = Field(description="RFC 3339, inclusive")
    end: Time = Field(description="RFC 3339, exclusive")
    format: Literal["csv", "ndjson"] = Field("csv", description="csv or ndjson")


class RejectsParams(_Params):
    """Filters over the dead letters (newest first)."""

    device_id: str | None = Field(None, max_length=200, description="only this device")
    reason: str | None = Field(None, max_length=100, description="only this reason code")
    source: Literal["mqtt", "http"] | None = Field(None, description="only this intake")
    start: Time | None = Field(None, description="received at or after (RFC 3339)")
    end: Time | None = Field(None, description="received before (RFC 3339)")
    limit: int = Field(100, ge=1, le=1000, description="dead letters per page")
    cursor: Cursor = None


class FleetLatestParams(_Params):
    """Latest values of many devices, ordered by device id."""

    metric: MetricList = None
    limit: int = Field(1000, ge=1, le=10_000, description="devices per page")
    cursor: Cursor = None


class CreateDevice(BaseModel):
    """A device to register."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: DeviceId
    name: Annotated[str | None, AfterValidator(no_nul)] = Field(None, max_length=200)
    metadata: Annotated[dict[str, Any], AfterValidator(no_nul)] = Field(default_factory=dict)
    expected_interval_s: int | None = Field(
        None, ge=1, le=2_147_483_647, description="how often it should report"
    )
    gateway: bool = Field(
        default=False, description="whether it may send readings for devices attached to it"
    )


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorBody(_Out):
    """Every error response: a stable code and a sentence for people."""

    error: str
    detail: str


class DeviceCreated(_Out):
    """A new device and its token, which is shown this once."""

    device_id: str
    token: str


class TokenRotated(DeviceCreated):
    """A device's new token; the old one stops working."""


class Device(_Out):
    """A registered device and its reporting status.

    ``metadata`` is the operator's (set through the API), ``attributes`` what the device
    reports about itself (since ``attributes_at``); ``gateway_id`` is the gateway it is
    attached to.
    """

    device_id: str
    name: str | None
    metadata: dict[str, Any]
    expected_interval_s: int | None
    created_at: datetime
    last_seen: datetime | None
    status: DeviceStatus
    last_seq: int | None
    seq_gaps: int
    attributes: dict[str, Any]
    attributes_at: datetime | None
    gateway: bool
    gateway_id: str | None


class DeviceList(_Out):
    """One page of devices."""

    devices: list[Device]
    next_cursor: str | None


class LatestValue(_Out):
    """The newest reading of one metric, and the device's unit of it (None: none given)."""

    metric: str
    ts: datetime
    value: Value
    unit: str | None


class LatestValues(_Out):
    """The newest reading of every metric of a device."""

    device_id: str
    values: list[LatestValue]


class FleetLatestPage(_Out):
    """One page of devices with their newest readings."""

    devices: list[LatestValues]
    next_cursor: str | None


class RawReading(_Out):
    """One stored reading."""

    metric: str
    ts: datetime
    value: Value


class RawReadings(_Out):
    """One page of raw readings, ordered by metric then time; ``units`` by metric."""

    device_id: str
    start: datetime
    end: datetime
    readings: list[RawReading]
    units: dict[str, str]
    next_cursor: str | None


# A typed dict rather than a model: a day of minutes is 1,440 points per series, and
# building as many models cost more than the query.
class BucketPoint(TypedDict):
    """Aggregates of one bucket; only those asked for (and that apply) are present.

    ``states``: seconds the metric held each value within the bucket (and the range).
    """

    ts: datetime
    avg: NotRequired[float]
    min: NotRequired[bool | float]
    max: NotRequired[bool | float]
    count: NotRequired[int]
    sum: NotRequired[float]
    first: NotRequired[Value]
    last: NotRequired[Value]
    increase: NotRequired[float]
    rate: NotRequired[float]
    states: NotRequired[dict[str, float]]


class BucketSeries(_Out):
    """The buckets of one metric that hold readings (or, for states, a value), in order."""

    metric: str
    type: ValueType
    unit: str | None
    points: list[BucketPoint]


class BucketedReadings(_Out):
    """Aggregates per bucket; ``source`` says which table served the bulk of the range."""

    device_id: str
    start: datetime
    end: datetime
    bucket: str
    bucket_s: int
    agg: list[Aggregate]
    source: Literal["raw", "rollup_1m", "rollup_1h", "rollup_1d"]
    series: list[BucketSeries]


class StatusCounts(_Out):
    """Devices by status."""

    total: int
    online: int
    offline: int
    never_seen: int


class Fleet(_Out):
    """Fleet summary."""

    devices: StatusCounts
    readings_last_minute: int
    readings_last_hour: int


class DeadLetterOut(_Out):
    """A rejected message or item."""

    id: int
    received_at: datetime
    source: str
    device_id: str | None
    item_index: int | None
    reason: str
    detail: str
    payload: str = Field(description="the raw payload as UTF-8 (undecodable bytes replaced)")
    payload_base64: str = Field(description="the raw payload, exactly")


class DeadLetterPage(_Out):
    """One page of dead letters, newest first."""

    dead_letters: list[DeadLetterOut]
    next_cursor: str | None


class Health(_Out):
    """The process answers."""

    status: Literal["ok"]


class Readiness(_Out):
    """Whether the database answers."""

    ready: bool
    checks: dict[str, str]
