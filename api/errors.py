"""Exceptions of the api package.

Exception tree::

    ApiError
     ├── ConfigError                 a setting is missing or invalid
     ├── DatabaseUnavailableError    no connection could be had in time (HTTP 503)
     ├── BrokerError                 the MQTT broker did not confirm a change of device
     │    │                          credentials (HTTP 503); nothing was changed
     │    ├── BrokerUnavailableError cannot connect, log in, or no answer in time
     │    └── BrokerRefusedError     the dynamic security plugin refused a command
     └── RequestError                the request cannot be served as asked; carries its
          │                          HTTP status and a stable error code
          ├── BadRequestError        400 malformed or contradictory input
          ├── UnauthorizedError      401 no API key or an unknown one
          ├── ForbiddenError         403 the key's scope does not allow this
          ├── NotFoundError          404 no such device
          ├── ConflictError          409 the device already exists
          └── RateLimitedError       429 the key is over its request rate
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ApiError",
    "BadRequestError",
    "BrokerError",
    "BrokerRefusedError",
    "BrokerUnavailableError",
    "ConfigError",
    "ConflictError",
    "DatabaseUnavailableError",
    "ForbiddenError",
    "NotFoundError",
    "RateLimitedError",
    "RequestError",
    "UnauthorizedError",
]


class ApiError(Exception):
    """Root of every error raised by the api package."""


class ConfigError(ApiError):
    """A setting is missing or invalid."""


class DatabaseUnavailableError(ApiError):
    """The database could not be reached in time; the client should retry later."""


class BrokerError(ApiError):
    """The broker did not confirm a change of credentials; the caller should retry later."""


class BrokerUnavailableError(BrokerError):
    """The broker cannot be reached, refuses the admin login, or does not answer in time."""


class BrokerRefusedError(BrokerError):
    """The dynamic security plugin answered a command with an error."""


class RequestError(ApiError):
    """A request that cannot be served as asked; rendered as ``{"error", "detail"}``."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"


class BadRequestError(RequestError):
    """Malformed or contradictory input (bad times, reversed range, unknown agg...)."""


class UnauthorizedError(RequestError):
    """No API key, or one that is unknown or revoked."""

    status = 401
    code = "unauthorized"


class ForbiddenError(RequestError):
    """The key is valid but its scope does not cover the operation."""

    status = 403
    code = "forbidden"


class NotFoundError(RequestError):
    """The device named in the path does not exist."""

    status = 404
    code = "not_found"


class ConflictError(RequestError):
    """The device id is taken."""

    status = 409
    code = "conflict"


class RateLimitedError(RequestError):
    """The key is over its request rate; ``retry_after_s`` says when to come back."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
