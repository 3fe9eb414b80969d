"""Settings plumbing shared by every service: environment variables, each with a flag.

A field ``db_pool_max`` reads ``DB_POOL_MAX`` and has the flag ``--db-pool-max``; a flag
wins over the environment, the environment over the default. Each service parses its
settings once in ``main()`` and hands them down as small frozen groups.
"""

from __future__ import annotations

import argparse
from typing import Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError

__all__ = ["DatabaseSettings", "MqttProtocol", "add_settings_arguments", "settings_from_args"]

MqttProtocol = Literal["5", "3.1.1"]


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


S = TypeVar("S", bound=BaseSettings)


def add_settings_arguments(parser: argparse.ArgumentParser, *models: type[BaseSettings]) -> None:
    """Add a ``--flag`` for every field of ``models``; help shows the env name and default."""
    for model in models:
        group = parser.add_argument_group(model.__doc__.splitlines()[0] if model.__doc__ else "")
        for name, info in model.model_fields.items():
            env = name.upper()
            group.add_argument(
                f"--{name.replace('_', '-')}",
                dest=name,
                default=None,
                metavar=env,
                help=f"{info.description or ''} (env {env}, default {info.default})",
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
