"""Exceptions of the shared core.

Exception tree::

    CoreError
     ├── ConfigError            a setting or a URL is missing or invalid
     ├── DeviceExistsError      the registry already has a device with that id
     └── StateError             a resource used out of order: opened twice, or used
                                before it was opened or after it was closed (a bug)

Database failures met by the registry's functions are not translated here: they run on a
connection lent by the caller's pool (``ingest.writer``, ``api.database``), and the lender
translates them into its package's own errors where they enter.
"""

from __future__ import annotations

__all__ = ["ConfigError", "CoreError", "DeviceExistsError", "StateError", "one_line"]


class CoreError(Exception):
    """Root of every error raised by the core package."""


class ConfigError(CoreError):
    """A setting or a URL is missing or invalid; the message names it."""


class DeviceExistsError(CoreError):
    """A device with that id is already registered."""


class StateError(CoreError):
    """A resource was used out of order (opened twice, used before open or after close)."""


def one_line(exc: BaseException) -> str:
    """First line of an exception's message (driver messages run to several lines)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
