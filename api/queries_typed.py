"""Statements of booleans and strings (``readings_typed``) and of units; every value bound.

A typed row holds its value in ``value_bool`` or ``value_text``. Buckets are aligned on the
Unix epoch, as the numeric ones are (:mod:`api.queries`).
"""

from __future__ import annotations

from api.queries import NDJSON_COPY_OPTIONS

__all__ = [
    "COPY_CSV_TYPED",
    "COPY_NDJSON_TYPED",
    "RAW_PAGE_TYPED",
    "STATES",
    "TYPED_BUCKETS",
    "UNITS",
]

UNITS = """
SELECT metric_key, unit FROM metric_units
WHERE device_key = %(device_key)s AND metric_key = ANY(%(metric_keys)s)
"""

RAW_PAGE_TYPED = """
SELECT time, value_bool, value_text FROM readings_typed
WHERE device_key = %(device_key)s AND metric_key = %(metric_key)s
  AND time >= %(start)s AND time < %(end)s AND time > %(after)s
ORDER BY time
LIMIT %(limit)s
"""

_BUCKET = "date_bin(%(step)s::interval, time, '1970-01-01 00:00:00+00')"
# Per bucket: count, first and last of each column, and for booleans the share of true,
# whether all and whether any were true, and how many were.
TYPED_BUCKETS = f"""
SELECT {_BUCKET} AS b, count(*),
       (array_agg(value_bool ORDER BY time))[1], (array_agg(value_bool ORDER BY time DESC))[1],
       (array_agg(value_text ORDER BY time))[1], (array_agg(value_text ORDER BY time DESC))[1],
       avg(value_bool::int)::float8, bool_and(value_bool), bool_or(value_bool),
       count(*) FILTER (WHERE value_bool)
FROM readings_typed
WHERE device_key = %(device_key)s AND metric_key = %(metric_key)s
  AND time >= %(start)s AND time < %(end)s
GROUP BY 1
ORDER BY 1
"""  # noqa: S608  (constant fragments only)

# Seconds in each value per bucket. A value holds from its reading until the next one, the
# last one until %(until)s (the end of the range, or now if that is earlier); the value at
# the start of the range is that of the last reading before it. Each span is cut at the
# bucket edges it crosses, so a bucket gets exactly the part of each span inside it.
STATES = """
WITH readings (time, value_bool, value_text) AS (
    (SELECT time, value_bool, value_text FROM readings_typed
     WHERE device_key = %(device_key)s AND metric_key = %(metric_key)s AND time < %(start)s
     ORDER BY time DESC
     LIMIT 1)
    UNION ALL
    SELECT time, value_bool, value_text FROM readings_typed
    WHERE device_key = %(device_key)s AND metric_key = %(metric_key)s
      AND time >= %(start)s AND time < %(until)s
), spans AS (
    SELECT greatest(time, %(start)s) AS lo,
           coalesce(lead(time) OVER (ORDER BY time), %(until)s) AS hi,
           coalesce(value_bool::text, value_text) AS state
    FROM readings
)
SELECT b, state,
       extract(epoch FROM sum(least(hi, b + %(step)s::interval) - greatest(lo, b)))::float8
FROM spans,
     generate_series(date_bin(%(step)s::interval, lo, '1970-01-01 00:00:00+00'),
                     hi - interval '1 microsecond', %(step)s::interval) AS b
WHERE hi > lo
GROUP BY 1, 2
ORDER BY 1, 2
"""

_EXPORT_ROWS = """
FROM readings_typed
WHERE device_key = %(device_key)s AND metric_key = %(metric_key)s
  AND time >= %(start)s AND time < %(end)s
ORDER BY time
"""
_RFC3339_UTC = """to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
# Booleans as true and false; strings as they are (CSV quotes them where it must).
COPY_CSV_TYPED = f"""
COPY (SELECT %(device_id)s::text, %(metric)s::text, {_RFC3339_UTC},
             coalesce(value_bool::text, value_text), %(unit)s::text
      {_EXPORT_ROWS})
TO STDOUT (FORMAT csv)
"""
COPY_NDJSON_TYPED = f"""
COPY (SELECT json_build_object('device_id', %(device_id)s::text, 'metric', %(metric)s::text,
                               'ts', {_RFC3339_UTC},
                               'value', coalesce(to_jsonb(value_bool), to_jsonb(value_text)),
                               'unit', %(unit)s::text)
      {_EXPORT_ROWS})
TO STDOUT {NDJSON_COPY_OPTIONS}
"""
