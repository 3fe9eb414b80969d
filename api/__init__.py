"""Query API: devices, latest values, ranges, aggregates and export over HTTP."""

from api.app import create_app, endpoints
from api.auth import KeyStore, Principal, Scope, create_key, generate_key, hash_key
from api.errors import (
    ApiError,
    BadRequestError,
    ConfigError,
    ConflictError,
    DatabaseUnavailableError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    RequestError,
    UnauthorizedError,
)
from api.openapi import openapi_document
from api.settings import ApiSettings
from api.version import __version__

__all__ = [
    "ApiError",
    "ApiSettings",
    "BadRequestError",
    "ConfigError",
    "ConflictError",
    "DatabaseUnavailableError",
    "ForbiddenError",
    "KeyStore",
    "NotFoundError",
    "Principal",
    "RateLimitedError",
    "RequestError",
    "Scope",
    "UnauthorizedError",
    "__version__",
    "create_app",
    "create_key",
    "endpoints",
    "generate_key",
    "hash_key",
    "openapi_document",
]
