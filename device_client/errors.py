"""Exceptions of the device agent.

Exception tree::

    DeviceClientError           root: everything the agent raises on purpose
     ├── ConfigError            the TOML file or an environment override is invalid
     ├── SensorError            a sensor could not be read this time (the sample is skipped)
     ├── SpoolError             the on-disk spool failed or belongs to another device
     ├── ResourceStateError     a spool or transport used before open or after close
     └── TransportError         a send did not complete; the readings stay in the spool
          ├── RetryLaterError   the server asked us to wait (HTTP 429/503 with Retry-After)
          └── BatchRejectedError  the server refused the whole batch (HTTP 400/413/415)
"""

from __future__ import annotations

__all__ = [
    "BatchRejectedError",
    "ConfigError",
    "DeviceClientError",
    "ResourceStateError",
    "RetryLaterError",
    "SensorError",
    "SpoolError",
    "TransportError",
]


class DeviceClientError(Exception):
    """Root of the device agent's exceptions."""


class ConfigError(DeviceClientError):
    """The configuration is invalid; the message names the file, key and problem."""


class SensorError(DeviceClientError):
    """A sensor failed to produce a value this time."""


class SpoolError(DeviceClientError):
    """The spool database failed or does not belong to this device."""


class ResourceStateError(DeviceClientError):
    """A long-lived resource was used outside its open/close lifetime."""


class TransportError(DeviceClientError):
    """A connection or send failed; what was not acknowledged is sent again later."""


class RetryLaterError(TransportError):
    """The server is busy and named how long to wait."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BatchRejectedError(TransportError):
    """The server refused a whole batch as malformed or too large (not retryable as is)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
