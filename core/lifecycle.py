"""Long-lived resources as async context managers that open once and close once.

A writer, a pipeline, an MQTT consumer or a connection pool goes UNOPENED → OPEN →
CLOSED and never back: opening twice, or using one that is not open, raises
:class:`~core.errors.StateError` naming the resource, instead of failing somewhere deeper.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from typing import Self

from core.errors import StateError

__all__ = ["AsyncResource", "ResourceState"]


class ResourceState(enum.Enum):
    """Where a resource is in its life."""

    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class AsyncResource(ABC):
    """Base of resources opened by ``async with`` (or :meth:`open`) and closed once."""

    _state: ResourceState = ResourceState.UNOPENED

    @property
    def state(self) -> ResourceState:
        """Where this resource is in its life."""
        return self._state

    async def open(self) -> None:
        """Open the resource; StateError if it was opened before."""
        if self._state is not ResourceState.UNOPENED:
            raise StateError(f"cannot open {self._name()} twice (it is {self._state.value})")
        await self._open()
        self._state = ResourceState.OPEN

    async def close(self) -> None:
        """Close the resource (once; closing again does nothing)."""
        if self._state is ResourceState.OPEN:
            # Closed first: whatever arrives while it winds down is refused.
            self._state = ResourceState.CLOSED
            await self._close()
        self._state = ResourceState.CLOSED

    def _require_open(self) -> None:
        if self._state is not ResourceState.OPEN:
            raise StateError(f"{self._name()} is {self._state.value}, not open")

    def _name(self) -> str:
        return type(self).__name__

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @abstractmethod
    async def _open(self) -> None:
        """Acquire what the resource holds."""

    @abstractmethod
    async def _close(self) -> None:
        """Release it; runs once, after the state has become CLOSED."""
