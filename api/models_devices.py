"""Request and response bodies of changes to devices: merge patches, history, gateways."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.models import DeviceId, no_nul

__all__ = [
    "ChangesParams",
    "ChildParams",
    "Children",
    "DeviceChange",
    "DeviceChanges",
    "PatchDevice",
]


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class PatchDevice(BaseModel):
    """A JSON merge patch (RFC 7396) of a device: members left out stay as they are.

    ``null`` removes: ``name`` and ``expected_interval_s`` become unset, ``gateway`` false,
    and within ``metadata`` the member of that name goes (``"metadata": null`` empties it).
    Objects in ``metadata`` merge member by member; anything else replaces.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str | None, AfterValidator(no_nul)] = Field(None, max_length=200)
    expected_interval_s: int | None = Field(
        None, ge=1, le=2_147_483_647, description="how often it should report"
    )
    metadata: Annotated[dict[str, Any] | None, AfterValidator(no_nul)] = Field(
        None, description="merged into the metadata; a member set to null is removed"
    )
    gateway: bool | None = Field(
        None, description="whether it may send readings for devices attached to it"
    )


class ChangesParams(_Params):
    """A device's history of changes, newest first."""

    device_id: DeviceId
    limit: int = Field(100, ge=1, le=1000, description="changes per page")
    cursor: Annotated[
        str | None, Field(max_length=200, description="`next_cursor` of the previous page")
    ] = None


class DeviceChange(_Out):
    """One change through the API: the merge patch as applied, by which key, and when.

    ``key_id`` is None for the bootstrap key (``API_ADMIN_KEY``).
    """

    changed_at: datetime
    key_id: int | None
    change: dict[str, Any]


class DeviceChanges(_Out):
    """One page of a device's changes, newest first."""

    device_id: str
    changes: list[DeviceChange]
    next_cursor: str | None


class ChildParams(_Params):
    """A gateway and a device attached (or to attach) to it."""

    device_id: DeviceId
    child_id: DeviceId


class Children(_Out):
    """The devices attached to a gateway, by id."""

    gateway_id: str
    children: list[str]
