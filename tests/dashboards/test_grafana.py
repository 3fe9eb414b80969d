"""The expander gives what Grafana gives (cases from Grafana's own macro and format tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.dashboards.grafana import (
    ExpansionError,
    TimeRange,
    VariableValue,
    expand,
    format_interval,
    go_float,
    parse_interval,
    variable_names,
)

FROM = datetime(2018, 4, 12, 18, 0, tzinfo=UTC)
RANGE = TimeRange(FROM, FROM + timedelta(minutes=5))
MINUTE = timedelta(minutes=1)


def _expand(sql: str, *, timescaledb: bool = False, **variables: VariableValue) -> str:
    return expand(sql, variables, RANGE, MINUTE, timescaledb=timescaledb)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select $__time(time_column)", 'select time_column AS "time"'),
        (
            "WHERE $__timeFilter(time_column)",
            "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'",
        ),
        ("select $__timeFrom()", "select '2018-04-12T18:00:00Z'"),
        ("select $__timeTo()", "select '2018-04-12T18:05:00Z'"),
        (
            "SELECT $__timeGroup(time_column,'5m')",
            "SELECT floor(extract(epoch from time_column)/300)*300",
        ),
        (
            "SELECT $__timeGroupAlias(time_column , '5m')",
            'SELECT floor(extract(epoch from time_column)/300)*300 AS "time"',
        ),
        (
            "SELECT $__timeGroup(time_column,'5m'), value",
            'SELECT floor(extract(epoch from time_column)/300)*300 AS "time", value',
        ),
        ("select $__unixEpochFilter(time)", "select time >= 1523556000 AND time <= 1523556300"),
        (
            "SELECT $__unixEpochGroup(time_column+time_adjustment,'5m')",
            "SELECT floor((time_column+time_adjustment)/300)*300",
        ),
        ("SELECT $__interval_ms, '$__interval'", "SELECT 60000, '1m'"),
        (
            "SELECT $__timeGroupAlias(t, $__interval, NULL)",
            'SELECT floor(extract(epoch from t)/60)*60 AS "time"',
        ),
    ],
)
def test_macros(sql: str, expected: str) -> None:
    assert _expand(sql) == expected


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ("'5m'", "time_bucket('300.000s',t)"),
        ("'12d'", "time_bucket('1036800.000s',t)"),
        ("'20ms'", "time_bucket('0.020s',t)"),
    ],
)
def test_time_group_with_timescaledb_enabled(interval: str, expected: str) -> None:
    assert _expand(f"$__timeGroup(t , {interval})", timescaledb=True) == expected


def test_fractional_times_are_written_as_go_does() -> None:
    start = datetime(1960, 2, 1, 7, 0, 0, 500_000, tzinfo=UTC)
    sql = expand("$__timeFilter(t)", {}, TimeRange(start, start), MINUTE)
    assert sql == "t BETWEEN '1960-02-01T07:00:00.5Z' AND '1960-02-01T07:00:00.5Z'"


def test_variables_are_quoted_as_the_postgres_datasource_quotes_them() -> None:
    multi = VariableValue(("a", "it's"), multi=True)
    single = VariableValue("it's")
    assert _expand("IN ($m)", m=multi) == "IN ('a','it''s')"
    assert _expand("= '$s'", s=single) == "= 'it''s'"
    assert _expand("= ${s:sqlstring}", s=single) == "= 'it''s'"
    assert _expand("IN (${m:sqlstring})", m=multi) == "IN ('a','it''s')"
    assert _expand("${m:csv} [[s]]", m=multi, s=VariableValue("x")) == "a,it's x"
    # A repeated panel sees one value of a multi-value variable: still quoted.
    assert _expand("= $m", m=VariableValue("a", multi=True)) == "= 'a'"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("$__timeFilterz(t)", "unknown macro"),
        ("WHERE $__timeFilter", "not a macro"),
        ("WHERE $nope", "no such variable"),
        ("${s:percentencode}", "format not supported"),
        ("$__timeGroup(t)", "needs a column"),
        ("$__timeGroup(t, 1m, zero)", "fill value"),
        ("$__timeGroup(t, fortnight)", "not an interval"),
    ],
)
def test_what_grafana_would_not_expand_fails_loudly(sql: str, message: str) -> None:
    with pytest.raises(ExpansionError, match=message):
        _expand(sql, s=VariableValue("x"))


def test_interval_helpers() -> None:
    assert parse_interval("'1h'") == timedelta(hours=1)
    assert format_interval(timedelta(seconds=90)) == "1m"
    assert format_interval(timedelta(days=2)) == "2d"
    assert format_interval(timedelta(milliseconds=500)) == "500ms"
    assert [go_float(v) for v in (60.0, 0.5, 604800.0, 2592000.0)] == [
        "60",
        "0.5",
        "604800",
        "2.592e+06",
    ]
    assert variable_names("$a [[b]] ${c:csv} $__interval") == {"a", "b", "c", "__interval"}
