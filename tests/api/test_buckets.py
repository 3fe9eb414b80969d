"""Unit tests of bucket widths, point counts and the choice of table for a range."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api import buckets
from api.errors import BadRequestError

T = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds", "label"),
    [("1s", 1, "1s"), ("90s", 90, "90s"), ("120s", 120, "2m"), ("60m", 3600, "1h"),
     ("24h", 86400, "1d"), ("1d", 86400, "1d")],
)  # fmt: skip
def test_widths_parse_and_print_in_their_shortest_form(text: str, seconds: int, label: str) -> None:
    assert buckets.bucket_seconds(text) == seconds
    assert buckets.bucket_label(seconds) == label


@pytest.mark.parametrize("text", ["0s", "2d", "25h", "86401s"])
def test_widths_outside_one_second_to_one_day_are_refused(text: str) -> None:
    with pytest.raises(BadRequestError, match="not between 1s and 1d"):
        buckets.bucket_seconds(text)


def test_point_count_counts_the_buckets_a_range_touches() -> None:
    assert buckets.point_count(T, T + timedelta(days=1), 60) == 1440
    assert buckets.point_count(T + timedelta(seconds=30), T + timedelta(minutes=2), 60) == 2
    assert buckets.point_count(T + timedelta(seconds=30), T + timedelta(seconds=31), 60) == 1


def test_too_many_points_suggest_a_width_that_fits() -> None:
    with pytest.raises(BadRequestError) as raised:
        buckets.check_points(T, T + timedelta(days=30), 60, 10_000)
    assert str(raised.value) == (
        "bucket: 43200 points per series is over the limit of 10000; use bucket=5m or wider"
    )


def test_whole_widths_of_a_rollup_are_one_row_per_bucket_others_are_grouped() -> None:
    day = (T, T + timedelta(days=1))
    one_row = buckets.Plan("rollup_1m", *day, one_row_per_bucket=True)
    assert buckets.plan(*day, 60, None) == one_row
    assert buckets.plan(*day, 300, None) == buckets.Plan("rollup_1m", *day)
    assert buckets.plan(*day, 3600, None) == replace(one_row, source="rollup_1h")
    assert buckets.plan(*day, 7200, None) == buckets.Plan("rollup_1h", *day)
    assert buckets.plan(*day, 86400, None).source == "raw"  # no whole day in it
    days = (T - timedelta(hours=13), T + timedelta(days=2, hours=13))
    assert buckets.plan(*days, 86400, None) == buckets.Plan(
        "rollup_1d",
        T - timedelta(hours=12),
        T + timedelta(days=2, hours=12),
        one_row_per_bucket=True,
    )
    assert buckets.plan(*day, 30, None).source == "raw"


def test_the_plain_watermark_ends_what_a_rollup_serves() -> None:
    chosen = buckets.plan(T, T + timedelta(hours=2), 60, T + timedelta(minutes=30, seconds=5))
    assert (chosen.rollup_lo, chosen.rollup_hi) == (T, T + timedelta(minutes=30))
    assert buckets.plan(T, T + timedelta(hours=2), 60, T).source == "raw"


@given(
    start_s=st.integers(0, 10 * 86400),
    length_s=st.integers(1, 10 * 86400),
    seconds=st.sampled_from([1, 30, 60, 300, 3600, 7200, 86400]),
)
def test_a_rollup_serves_only_whole_rows_inside_the_range(
    start_s: int, length_s: int, seconds: int
) -> None:
    start = T + timedelta(seconds=start_s, microseconds=start_s % 7)
    end = start + timedelta(seconds=length_s)
    chosen = buckets.plan(start, end, seconds, None)
    if chosen.source == "raw":
        assert chosen.rollup_lo == chosen.rollup_hi
        return
    step = {"rollup_1d": 86400, "rollup_1h": 3600, "rollup_1m": 60}[chosen.source]
    assert seconds % step == 0
    assert start <= chosen.rollup_lo < chosen.rollup_hi <= end
    for edge in (chosen.rollup_lo, chosen.rollup_hi):
        assert edge.timestamp() % step == 0
    assert chosen.one_row_per_bucket == (seconds == step)
