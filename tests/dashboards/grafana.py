"""What Grafana does to a PostgreSQL panel's SQL before the database sees it.

Three stages, as in Grafana 11/12:

1. the frontend's template service replaces variables (``$var``, ``${var}``,
   ``${var:format}``, ``[[var]]``) and the interval variables ``$__interval`` and
   ``$__interval_ms``; a value without a format goes through the PostgreSQL datasource's
   ``interpolateVariable`` (multi-value and include-all variables: each value single-quoted,
   comma-joined; single values: quotes doubled, no quotes added); names it does not know are
   left alone;
2. the backend's global substitutions (``sqleng.Interpolate``);
3. the PostgreSQL macro engine (``macros.go``): ``$__name(args)``, args split on commas.

References: grafana/grafana ``pkg/tsdb/grafana-postgresql-datasource/macros.go`` and
``sqleng/sql_engine.go``, ``packages/grafana-sql/src/datasource/SqlDatasource.ts`` and the
variable format registry. Unknown ``$__`` macros, unknown formats and variables missing from
the dashboard raise :class:`ExpansionError` here (Grafana would send broken SQL instead).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

__all__ = [
    "BUILTIN_VARIABLES",
    "ExpansionError",
    "TimeRange",
    "VariableValue",
    "expand",
    "format_interval",
    "go_float",
    "parse_interval",
    "variable_names",
]


class ExpansionError(ValueError):
    """The SQL uses a macro, variable or format that Grafana would not expand."""


@dataclass(frozen=True)
class VariableValue:
    """A variable's current value and whether Grafana treats it as multi-value."""

    value: str | tuple[str, ...]
    multi: bool = False


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time range."""

    start: datetime
    end: datetime


#: Grafana's global variables that the dashboards may use besides their own, and ``$__all``,
#: the stored value of an "All" selection.
BUILTIN_VARIABLES = frozenset(
    {"__interval", "__interval_ms", "__rate_interval", "__range", "__from", "__to", "__all"}
)
# The template service's variable syntax (public/app/features/variables/utils.ts).
_VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}"
)
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_UNITS_MS |= {"w": 7 * 86_400_000, "y": 365 * 86_400_000}


def variable_names(text: str) -> set[str]:
    """Names of the variables ``text`` refers to, in any of Grafana's syntaxes."""
    return {next(g for g in (m[1], m[2], m[4]) if g) for m in _VARIABLE.finditer(text)}


def parse_interval(text: str) -> timedelta:
    """Parse ``500ms``, ``10s``, ``5m``, ``2h``, ``1d``, ``1w``, ``1y`` (gtime.ParseInterval)."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|y)", text.strip().strip("'"))
    if match is None:
        raise ExpansionError(f"not an interval: {text!r}")
    return timedelta(milliseconds=int(match[1]) * _UNITS_MS[match[2]])


def format_interval(interval: timedelta) -> str:
    """Format an interval as gtime.FormatInterval does: its largest whole unit."""
    ms = interval // timedelta(milliseconds=1)
    for unit in ("y", "d", "h", "m", "s", "ms"):
        if ms >= _UNITS_MS[unit]:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    return "1ms"


def go_float(value: float) -> str:
    """Format a float as Go's ``%v`` does (shortest digits; exponent from 1e+06 up)."""
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    exp10 = len(text) + exponent - 1
    minus = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{minus}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    return minus + format(Decimal(repr(abs(value))).normalize(), "f")


def _rfc3339_nano(t: datetime) -> str:
    t = t.astimezone(UTC)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        text += f".{t.microsecond:06d}".rstrip("0")
    return text + "Z"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _format(name: str, value: str | tuple[str, ...], fmt: str) -> str:
    values = (value,) if isinstance(value, str) else value
    if fmt in ("csv", "raw"):
        return ",".join(values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''").replace('"', '\\"') + "'" for v in values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    raise ExpansionError(f"${{{name}:{fmt}}}: format not supported by this expander")


def _interpolate_variable(value: str | tuple[str, ...], multi: bool) -> str:
    # SqlDatasource.interpolateVariable
    if isinstance(value, str):
        return _quote(value) if multi else value.replace("'", "''")
    return ",".join(_quote(v) for v in value)


def replace_variables(
    text: str, variables: Mapping[str, VariableValue], interval: timedelta
) -> str:
    """Stage 1: the template service, with the panel's interval variables in scope."""
    scoped = dict(variables)
    scoped["__interval"] = VariableValue(format_interval(interval))
    scoped["__interval_ms"] = VariableValue(str(interval // timedelta(milliseconds=1)))

    def one(match: re.Match[str]) -> str:
        name = next(g for g in (match[1], match[2], match[4]) if g)
        fmt = match[3] or match[6]
        if match[5]:
            raise ExpansionError(f"{match[0]}: field paths are not supported by this expander")
        if name not in scoped:
            if name.startswith("__"):
                return match[0]  # a macro (or a global this panel has no value for)
            raise ExpansionError(f"{match[0]}: no such variable on the dashboard")
        var = scoped[name]
        if fmt:
            return _format(name, var.value, fmt)
        return _interpolate_variable(var.value, var.multi)

    return _VARIABLE.sub(one, text)


def _global_substitutions(text: str, interval: timedelta, time_range: TimeRange) -> str:
    # sqleng.Interpolate
    text = text.replace("$__interval_ms", str(interval // timedelta(milliseconds=1)))
    text = text.replace("$__interval", format_interval(interval))
    text = text.replace("$__unixEpochFrom()", str(int(time_range.start.timestamp())))
    return text.replace("$__unixEpochTo()", str(int(time_range.end.timestamp())))


def _check_fill(fill: str) -> None:
    # sqleng.SetupFillmode: NULL, previous or a number.
    if fill in ("NULL", "previous"):
        return
    try:
        float(fill)
    except ValueError:
        raise ExpansionError(f"error parsing fill value {fill}") from None


def _nanos(t: datetime) -> int:
    return int(t.timestamp()) * 10**9 + t.microsecond * 1000


_VALUE_MACROS: dict[str, Callable[[TimeRange], str]] = {
    "__timeFrom": lambda r: f"'{_rfc3339_nano(r.start)}'",
    "__timeTo": lambda r: f"'{_rfc3339_nano(r.end)}'",
    "__unixEpochNanoFrom": lambda r: str(_nanos(r.start)),
    "__unixEpochNanoTo": lambda r: str(_nanos(r.end)),
}
_COLUMN_MACROS: dict[str, Callable[[str, TimeRange], str]] = {
    "__time": lambda c, _: f'{c} AS "time"',
    "__timeEpoch": lambda c, _: f'extract(epoch from {c}) as "time"',
    "__timeFilter": lambda c, r: (
        f"{c} BETWEEN '{_rfc3339_nano(r.start)}' AND '{_rfc3339_nano(r.end)}'"
    ),
    "__unixEpochFilter": lambda c, r: (
        f"{c} >= {int(r.start.timestamp())} AND {c} <= {int(r.end.timestamp())}"
    ),
    "__unixEpochNanoFilter": lambda c, r: f"{c} >= {_nanos(r.start)} AND {c} <= {_nanos(r.end)}",
}
_GROUP_MACROS = frozenset({"__timeGroup", "__unixEpochGroup"})
#: Macros of the PostgreSQL macro engine.
MACROS = frozenset(
    {*_VALUE_MACROS, *_COLUMN_MACROS, *_GROUP_MACROS} | {f"{name}Alias" for name in _GROUP_MACROS}
)


def _group(name: str, args: list[str], timescaledb: bool) -> str:
    if len(args) < 2:
        raise ExpansionError(f"${name} needs a column, an interval and an optional fill")
    interval = parse_interval(args[1]).total_seconds()
    if len(args) == 3:
        _check_fill(args[2])
    seconds = go_float(interval)
    if name == "__unixEpochGroup":
        return f"floor(({args[0]})/{seconds})*{seconds}"
    if timescaledb:
        return f"time_bucket('{interval:.3f}s',{args[0]})"
    return f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"


def _macro(name: str, args: list[str], time_range: TimeRange, timescaledb: bool) -> str:
    base = name.removesuffix("Alias")
    if base in _GROUP_MACROS:
        return _group(base, args, timescaledb) + (' AS "time"' if base != name else "")
    if name in _VALUE_MACROS:
        return _VALUE_MACROS[name](time_range)
    if name in _COLUMN_MACROS:
        if not args or not args[0]:
            raise ExpansionError(f"missing time column argument for macro {name}")
        return _COLUMN_MACROS[name](args[0], time_range)
    raise ExpansionError(f"unknown macro ${name}")


def _macros(text: str, time_range: TimeRange, timescaledb: bool) -> str:
    def one(match: re.Match[str]) -> str:
        name = match[1]
        # Pre-5.3 compatibility in macros.go: $__timeGroup directly followed by a comma
        # is taken as $__timeGroupAlias.
        end = text.find(match[0])
        if name == "__timeGroup" and text[end + len(match[0]) : end + len(match[0]) + 1] == ",":
            name = "__timeGroupAlias"
        args = [a.strip() for a in match[2].split(",")]
        return _macro(name, args, time_range, timescaledb)

    return _MACRO.sub(one, text)


def expand(
    sql: str,
    variables: Mapping[str, VariableValue],
    time_range: TimeRange,
    interval: timedelta,
    *,
    timescaledb: bool = False,
) -> str:
    """Return ``sql`` as Grafana sends it to PostgreSQL for this range and interval."""
    text = replace_variables(sql, variables, interval)
    text = _global_substitutions(text, interval, time_range)
    text = _macros(text, time_range, timescaledb)
    left = re.search(r"\$__\w+", text)
    if left is not None:
        raise ExpansionError(f"{left[0]}: not a macro or variable Grafana expands here")
    return text
