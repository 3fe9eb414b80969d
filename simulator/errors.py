"""Exceptions of the simulator.

Exception tree::

    SimulatorError              root: everything the simulator raises on purpose
     ├── ConfigError            a flag, an environment variable or the fleet file is invalid
     ├── ApiError               the query API refused or could not be reached
     ├── DemoError              the demo cannot start, or a part of it stopped
     ├── ServiceError           a private PostgreSQL or broker could not be started or stopped
     │    └── ServiceNotInstalledError   its binaries are missing; the message says what
     │                                   to install
     └── DriverError            a message could not be sent; the device sends it again
          ├── RetryLaterError   the server asked us to wait (HTTP 429/503 with Retry-After)
          └── RefusedError      the server refused the message for good; it is not resent
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "ConfigError",
    "DemoError",
    "DriverError",
    "RefusedError",
    "RetryLaterError",
    "ServiceError",
    "ServiceNotInstalledError",
    "SimulatorError",
]


class SimulatorError(Exception):
    """Root of the simulator's exceptions."""


class ConfigError(SimulatorError):
    """A flag, an environment variable or the fleet file is invalid."""


class ApiError(SimulatorError):
    """The query API refused a request or could not be reached."""


class DemoError(SimulatorError):
    """The demo cannot start, or a part of it stopped; the message says what to do."""


class ServiceError(SimulatorError):
    """A private service could not be started or stopped."""


class ServiceNotInstalledError(ServiceError):
    """The binaries a service needs are not on this machine."""


class DriverError(SimulatorError):
    """A message could not be sent (no acknowledgement); it is sent again."""


class RetryLaterError(DriverError):
    """The server is busy or rate-limits us: wait ``retry_after_s`` and send again."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RefusedError(DriverError):
    """The server refused the message for good (an unexpected HTTP 4xx); it is not resent."""
