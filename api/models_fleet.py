"""Request and response bodies of fleet aggregates: one metric across the devices of tags."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, NotRequired

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# pydantic takes TypedDicts from typing only on Python 3.12 and later.
from typing_extensions import TypedDict

from api.models import METRIC_PATTERN, Time, no_nul
from api.tags import Tags

__all__ = [
    "FLEET_AGGREGATES",
    "AggregateParams",
    "FleetAggregate",
    "FleetAggregates",
    "FleetGroup",
    "FleetPoint",
]

FleetAggregate = Literal["avg", "min", "max", "count", "sum"]
FLEET_AGGREGATES: tuple[FleetAggregate, ...] = ("avg", "min", "max", "count", "sum")


def _fleet_aggs(value: str) -> str:
    for item in value.split(","):
        if item not in FLEET_AGGREGATES:
            raise ValueError(
                f"unknown agg {item!r}; across devices choose from {','.join(FLEET_AGGREGATES)}"
            )
    return value


class AggregateParams(BaseModel):
    """One numeric metric across the devices whose metadata matches the tags, per bucket."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: Annotated[str, Field(pattern=f"^{METRIC_PATTERN}$", description="metric name")]
    tag: Tags = []
    start: Time | None = Field(None, description="RFC 3339, inclusive (default: end - 1 day)")
    end: Time | None = Field(None, description="RFC 3339, exclusive (default: now)")
    bucket: str = Field(
        "1h",
        pattern=r"^[1-9][0-9]{0,5}[mhd]$",
        description="bucket width from 1m to 1d, whole minutes (read from the rollups)",
    )
    agg: Annotated[str, AfterValidator(_fleet_aggs)] = Field(
        "avg,min,max,count",
        max_length=100,
        description=f"aggregates, comma-separated, from {','.join(FLEET_AGGREGATES)}",
    )
    group_by: Annotated[str | None, AfterValidator(no_nul)] = Field(
        None,
        min_length=1,
        max_length=64,
        description="a metadata key: one group of devices per value (null: without the key)",
    )


# A typed dict, as the per-device buckets are: a day of minutes is many points.
class FleetPoint(TypedDict):
    """Aggregates of one bucket across a group's devices; only those asked for."""

    ts: datetime
    avg: NotRequired[float]
    min: NotRequired[float]
    max: NotRequired[float]
    count: NotRequired[int]
    sum: NotRequired[float]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class FleetGroup(_Out):
    """The devices that share a value of ``group_by`` (all of them, without it)."""

    group: str | None
    devices: int
    points: list[FleetPoint]


class FleetAggregates(_Out):
    """Per-bucket aggregates across the selected devices; ``source`` as for one device."""

    metric: str
    unit: str | None
    tags: dict[str, str]
    group_by: str | None
    start: datetime
    end: datetime
    bucket: str
    bucket_s: int
    agg: list[FleetAggregate]
    source: Literal["raw", "rollup_1m", "rollup_1h", "rollup_1d"]
    devices: int
    groups: list[FleetGroup]
