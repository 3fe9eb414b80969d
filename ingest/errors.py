"""Exceptions of the ingest package.

Exception tree::

    IngestError
     ├── ConfigError                 a setting is missing or invalid
     ├── MigrationError              the schema cannot be created or upgraded
     ├── OverloadedError             the pipeline is full or shutting down: push back
     └── StorageError                the database refused or failed a write
          ├── StorageUnavailableError  the database cannot be reached, retries exhausted;
          │                            transient: push back (HTTP 503, MQTT no ack) and retry
          └── StorageDataError         the database rejected the data itself; retrying the
                                       same batch will fail again
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "IngestError",
    "MigrationError",
    "OverloadedError",
    "StorageDataError",
    "StorageError",
    "StorageUnavailableError",
    "one_line",
]


class IngestError(Exception):
    """Root of every error raised by the ingest package."""


class ConfigError(IngestError):
    """A setting is missing or invalid."""


class MigrationError(IngestError):
    """The schema cannot be created or upgraded."""


class OverloadedError(IngestError):
    """The pipeline is full (or shutting down); the sender should retry later."""


class StorageError(IngestError):
    """The database refused or failed a write."""


class StorageUnavailableError(StorageError):
    """The database cannot be reached or keeps failing; the caller should retry later."""


class StorageDataError(StorageError):
    """The database rejected the data itself (not a transient failure)."""


def one_line(exc: BaseException) -> str:
    """First line of an exception's message (driver messages run to several lines)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
