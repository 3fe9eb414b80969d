"""Typed access to the agent's TOML tables: converters, env overrides, secrets from files."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, TypeVar

from device_client.errors import ConfigError

__all__ = [
    "BadValueError",
    "EnvValue",
    "Table",
    "boolean",
    "choice",
    "existing_file",
    "integer",
    "path_in",
    "positive_float",
    "positive_int",
    "secret",
    "string",
]

_T = TypeVar("_T")


class Table:
    """Typed access to one TOML table, with env overrides and a record of unknown keys."""

    def __init__(
        self,
        data: Mapping[str, Any],
        where: str,
        env: Mapping[str, str],
        env_prefix: str | None,
    ) -> None:
        self.data = dict(data)
        self.where = where
        self.env = env
        self.env_prefix = env_prefix
        self.seen: set[str] = set()

    def _raw(self, key: str) -> Any:
        self.seen.add(key)
        if self.env_prefix is not None:
            name = f"{self.env_prefix}{key.upper()}"
            if name in self.env:
                return EnvValue(self.env[name], name)
        return self.data.get(key)

    def fail(self, key: str, problem: str) -> ConfigError:
        """Build the one-line error for ``key``."""
        return ConfigError(f"{self.where}{key}: {problem}")

    def get(self, key: str, kind: Callable[[Any, str], _T], default: _T) -> _T:
        """Read ``key`` converted by ``kind``, or ``default`` when absent."""
        raw = self._raw(key)
        if raw is None:
            return default
        try:
            return kind(raw, key)
        except BadValueError as exc:
            raise self.fail(key, str(exc)) from None

    def require(self, key: str, kind: Callable[[Any, str], _T]) -> _T:
        """Read ``key`` converted by ``kind``; absent is an error."""
        raw = self._raw(key)
        if raw is None:
            hint = f" (or set {self.env_prefix}{key.upper()})" if self.env_prefix else ""
            raise self.fail(key, f"is required{hint}")
        try:
            return kind(raw, key)
        except BadValueError as exc:
            raise self.fail(key, str(exc)) from None

    def check_unknown(self) -> None:
        """Reject keys nobody read: a typo should not silently fall back to a default."""
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.fail(unknown[0], "unknown key")


class EnvValue(str):
    """A string that came from the environment: converters coerce it instead of rejecting."""

    __slots__ = ("var",)

    def __new__(cls, value: str, var: str) -> EnvValue:
        """Keep the name of the variable beside its value, for error messages."""
        obj = super().__new__(cls, value)
        obj.var = var
        return obj

    var: str


class BadValueError(ValueError):
    """A value of the wrong type or out of range; the table names its key."""


def string(raw: Any, _key: str) -> str:
    """Convert to a non-empty string."""
    if not isinstance(raw, str) or not raw:
        raise BadValueError(f"expected a non-empty string, got {raw!r}")
    return str(raw)


def integer(raw: Any, _key: str) -> int:
    """Convert to an integer (from the environment: digits, ``_`` allowed)."""
    if isinstance(raw, EnvValue):
        try:
            return int(raw.replace("_", ""))
        except ValueError:
            raise BadValueError(f"expected an integer in {raw.var}, got {str(raw)!r}") from None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise BadValueError(f"expected an integer, got {raw!r}")
    return int(raw)


def positive_int(raw: Any, key: str) -> int:
    """Convert to an integer above zero."""
    value = integer(raw, key)
    if value <= 0:
        raise BadValueError(f"expected a positive integer, got {value}")
    return value


def positive_float(raw: Any, _key: str) -> float:
    """Convert to a finite number above zero."""
    if isinstance(raw, EnvValue):
        try:
            value = float(raw)
        except ValueError:
            raise BadValueError(f"expected a number in {raw.var}, got {str(raw)!r}") from None
    elif isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise BadValueError(f"expected a number, got {raw!r}")
    else:
        value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise BadValueError(f"expected a positive number, got {value}")
    return value


def boolean(raw: Any, _key: str) -> bool:
    """Convert to true or false (from the environment: 1/0, true/false, yes/no, on/off)."""
    if isinstance(raw, EnvValue):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise BadValueError(f"expected true or false in {raw.var}, got {str(raw)!r}")
    if not isinstance(raw, bool):
        raise BadValueError(f"expected true or false, got {raw!r}")
    return raw


def choice(*choices: str) -> Callable[[Any, str], str]:
    """Make a converter that takes one of ``choices``."""

    def convert(raw: Any, key: str) -> str:
        value = string(raw, key)
        if value not in choices:
            raise BadValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    return convert


def path_in(base: Path) -> Callable[[Any, str], Path]:
    """Make a converter to a path, relative ones resolved against ``base``."""

    def convert(raw: Any, key: str) -> Path:
        path = Path(string(raw, key)).expanduser()
        return path if path.is_absolute() else base / path

    return convert


def existing_file(base: Path) -> Callable[[Any, str], Path]:
    """Make a converter to the path of a file that exists."""

    def convert(raw: Any, key: str) -> Path:
        path = path_in(base)(raw, key)
        if not path.is_file():
            raise BadValueError(f"no such file: {path}")
        return path

    return convert


def secret(table: Table, key: str, base: Path) -> str | None:
    """Read a secret inline or from ``<key>_file`` (first line, whitespace stripped)."""
    inline = table.get(key, string, None)
    path = table.get(f"{key}_file", existing_file(base), None)
    if inline is not None and path is not None:
        raise table.fail(key, f"give either {key} or {key}_file, not both")
    if path is None:
        return inline
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise table.fail(f"{key}_file", f"cannot read {path}: {exc.strerror}") from None
    if not text:
        raise table.fail(f"{key}_file", f"{path} is empty")
    return text
