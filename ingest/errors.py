"""Exceptions of the ingest package.

Exception tree::

    IngestError
     ├── MigrationError              the schema cannot be created or upgraded
     ├── OverloadedError             the pipeline is full or shutting down: push back
     └── StorageError                the database refused or failed a request
          ├── StorageUnavailableError  the database cannot be reached, retries exhausted;
          │    │                       transient: push back (HTTP 503, MQTT no ack) and retry
          │    └── MetricLimitError    the metric dictionary filled up during this batch: on
          │                            resend the intake refuses the new names itself
          └── StorageDataError         the database rejected the data itself; retrying the
                                       same batch will fail again

Settings and URLs are checked by :mod:`core`, whose ``ConfigError`` the command line
reports beside these.
"""

from __future__ import annotations

__all__ = [
    "IngestError",
    "MetricLimitError",
    "MigrationError",
    "OverloadedError",
    "StorageDataError",
    "StorageError",
    "StorageUnavailableError",
]


class IngestError(Exception):
    """Root of every error raised by the ingest package."""


class MigrationError(IngestError):
    """The schema cannot be created or upgraded."""


class OverloadedError(IngestError):
    """The pipeline is full (or shutting down); the sender should retry later."""


class StorageError(IngestError):
    """The database refused or failed a request."""


class StorageUnavailableError(StorageError):
    """The database cannot be reached or keeps failing; the caller should retry later."""


class StorageDataError(StorageError):
    """The database rejected the data itself (not a transient failure)."""


class MetricLimitError(StorageUnavailableError):
    """The batch brings metric names that the full metric dictionary has no key for.

    Raised once per process, by the batch during which the dictionary fills: afterwards the
    accept step refuses new names as ``too_many_metrics`` before they reach a batch, so the
    resent messages are stored but for those items.
    """
