"""Settings of the ingest service: environment variables, each with a command-line flag.

A field ``retention_days`` reads ``RETENTION_DAYS`` and has the flag ``--retention-days``;
a flag wins over the environment, the environment over the default. The flat settings are
parsed once in ``main()`` and handed down as small frozen groups.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.errors import ConfigError

__all__ = [
    "DatabaseSettings",
    "StorageMode",
    "StorageSettings",
    "add_settings_arguments",
    "settings_from_args",
]

StorageMode = Literal["auto", "timescale", "plain"]


class DatabaseSettings(BaseSettings):
    """Where the database is and how many connections to keep."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/telemetry",
        description="PostgreSQL connection URL (libpq conninfo strings work too)",
    )
    db_pool_min: int = Field(2, ge=1, description="connections kept open")
    db_pool_max: int = Field(8, ge=1, description="connections at most")
    db_retry_max_s: float = Field(
        10.0, ge=0, description="how long a write is retried on transient errors"
    )


class StorageSettings(BaseSettings):
    """Storage layout: which path, how long data is kept, how it is partitioned."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    storage_mode: StorageMode = Field(
        "auto", description="timescale, plain, or auto (timescale where installed)"
    )
    retention_days: int = Field(365, ge=1, description="readings older than this are dropped")
    chunk_interval_hours: int = Field(
        24, ge=1, description="TimescaleDB chunk interval (see docs/storage.md)"
    )
    compress_after_days: int = Field(7, ge=1, description="TimescaleDB compresses older chunks")
    partitions_ahead_days: int = Field(
        7, ge=1, description="plain PostgreSQL: daily partitions created ahead"
    )
    dead_letter_retention_days: int = Field(30, ge=1, description="dead letters kept this long")

    @property
    def retention(self) -> timedelta:
        """Retention as a duration."""
        return timedelta(days=self.retention_days)


@dataclass(frozen=True)
class _Flag:
    name: str
    env: str
    help: str


S = TypeVar("S", bound=BaseSettings)


def _flags(model: type[BaseSettings]) -> list[_Flag]:
    return [
        _Flag(name, name.upper(), info.description or "")
        for name, info in model.model_fields.items()
    ]


def add_settings_arguments(parser: argparse.ArgumentParser, *models: type[BaseSettings]) -> None:
    """Add a ``--flag`` for every field of ``models``; help shows the env name and default."""
    for model in models:
        group = parser.add_argument_group(model.__doc__.splitlines()[0] if model.__doc__ else "")
        for flag in _flags(model):
            default = model.model_fields[flag.name].default
            group.add_argument(
                f"--{flag.name.replace('_', '-')}",
                dest=flag.name,
                default=None,
                metavar=flag.env,
                help=f"{flag.help} (env {flag.env}, default {default})",
            )


def settings_from_args(model: type[S], args: argparse.Namespace) -> S:
    """Build ``model`` from flags over environment over defaults; ConfigError when invalid."""
    given = {
        name: value
        for name in model.model_fields
        if (value := getattr(args, name, None)) is not None
    }
    try:
        return model(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
