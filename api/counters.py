"""``agg=increase`` and ``agg=rate`` for monotonic counters (bytes sent, energy, pulses).

A counter that drops has been reset (as in Prometheus): the increase over a stretch of
readings is the sum of the rises between consecutive readings plus, after each reset, the
value read after it. Equivalently ``last - first + resets``, where ``resets`` sums the values
the counter dropped from; the rollups keep it per row (``counter_resets`` in ingest/sql), so
rows combine without their raw readings. The rise from the last reading of one bucket to the
first of the next belongs to the later bucket; the first bucket of a range counts from its
own first reading (a reading before ``start`` is not looked at). ``rate`` is the increase
per second of the part of the bucket inside the range.

The statements here give the columns of :mod:`api.queries`' bucket statements plus the
increase, from raw readings or a rollup with raw head and tail, as those do.
"""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = ["COUNTER_AGGREGATES", "QUERIES", "seconds_inside"]

#: Aggregates that need the counter statements.
COUNTER_AGGREGATES = frozenset({"increase", "rate"})

_RAW_PART = """
SELECT time, metric_key, 1::int8, value, value, value, value, value, 0::float8 FROM readings
WHERE device_key = %(device_key)s AND metric_key = ANY(%(metric_keys)s)
  AND time >= {lo} AND time < {hi}
"""
_ROLLUP_PART = """
SELECT bucket, metric_key, count, sum, min, max, first, last, resets FROM {view}
WHERE device_key = %(device_key)s AND metric_key = ANY(%(metric_keys)s)
  AND bucket >= %(rollup_lo)s AND bucket < %(rollup_hi)s
"""
# pl: the last value of the part before, in the same series. A part starting below it is
# a reset that lost pl; a bucket's increase starts from the last value before it.
_GROUP = """
, ordered AS (
    SELECT *, lag(l) OVER (PARTITION BY metric_key ORDER BY t) AS pl FROM parts
)
SELECT metric_key, date_bin(%(step)s::interval, t, '1970-01-01 00:00:00+00') AS b,
       sum(n)::int8, sum(s), min(lo), max(hi),
       (array_agg(f ORDER BY t))[1], (array_agg(l ORDER BY t DESC))[1],
       (array_agg(l ORDER BY t DESC))[1] - (array_agg(coalesce(pl, f) ORDER BY t))[1]
           + sum(r + CASE WHEN f < pl THEN pl ELSE 0 END)
FROM ordered
GROUP BY 1, 2
ORDER BY 1, 2
"""
_COLUMNS = "parts (t, metric_key, n, s, lo, hi, f, l, r)"


def _from_rollup(view: str) -> str:
    return f"""
WITH {_COLUMNS} AS (
    {_ROLLUP_PART.format(view=view)}
    UNION ALL
    {_RAW_PART.format(lo="%(start)s", hi="%(rollup_lo)s")}
    UNION ALL
    {_RAW_PART.format(lo="%(rollup_hi)s", hi="%(end)s")}
){_GROUP}"""


#: By source: the statement giving (metric_key, bucket, count, sum, min, max, first, last,
#: increase) per bucket.
QUERIES = {
    "raw": f"WITH {_COLUMNS} AS ({_RAW_PART.format(lo='%(start)s', hi='%(end)s')}){_GROUP}",
    "rollup_1m": _from_rollup("readings_1m"),
    "rollup_1h": _from_rollup("readings_1h"),
    "rollup_1d": _from_rollup("readings_1d"),
}


def seconds_inside(bucket: datetime, width: timedelta, start: datetime, end: datetime) -> float:
    """Return how many seconds of the bucket starting at ``bucket`` lie in [start, end)."""
    return (min(bucket + width, end) - max(bucket, start)).total_seconds()
