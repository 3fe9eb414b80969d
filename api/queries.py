"""Every SQL statement of the query API, as named constants; every value is a parameter.

Device status is computed in SQL from ``last_seen`` and the expected reporting interval,
so that the registry can be filtered by it: a device is ``online`` when it was heard
within ``offline_after`` expected intervals (the device's own, or the default).

Statements of booleans and strings are in :mod:`api.queries_typed`, of changes to devices
and gateways in :mod:`api.queries_devices`, of fleet aggregates in :mod:`api.queries_fleet`.
"""

from __future__ import annotations

__all__ = [
    "ALL_DEVICE_IDS",
    "BEGIN_SNAPSHOT",
    "BUCKETS_FROM_1D",
    "BUCKETS_FROM_1H",
    "BUCKETS_FROM_1M",
    "BUCKETS_FROM_RAW",
    "BUCKETS_OF_1D",
    "BUCKETS_OF_1H",
    "BUCKETS_OF_1M",
    "COPY_CSV",
    "COPY_NDJSON",
    "CREATE_KEY",
    "DELETE_DEVICE",
    "DELETE_DEVICE_LATEST",
    "DELETE_DEVICE_READINGS",
    "DELETE_DEVICE_ROLLUPS_1D",
    "DELETE_DEVICE_ROLLUPS_1H",
    "DELETE_DEVICE_ROLLUPS_1M",
    "DELETE_DEVICE_TYPED",
    "DEVICE_COLUMNS",
    "DEVICE_KEY",
    "DEVICE_KEYS",
    "EXPORT_SNAPSHOT",
    "FLEET_LATEST_JSON",
    "FLEET_READINGS",
    "FLEET_SLICE_ENDS",
    "FLEET_STATUS",
    "GET_DEVICE",
    "KEY_BY_HASH",
    "LATEST",
    "LIST_DEVICES",
    "LIST_DEVICES_SORTED",
    "METRIC_KEYS",
    "METRIC_KEYS_ALL",
    "NDJSON_COPY_OPTIONS",
    "NO_STATEMENT_TIMEOUT",
    "PING",
    "RAW_PAGE",
    "REJECTS",
    "RETENTION_SETTINGS",
    "ROLLUP_WATERMARK",
    "SET_CUSTOM_PLANS",
    "SET_STATEMENT_TIMEOUT",
    "SET_TIMEZONE_UTC",
    "STORAGE_MODE",
]

SET_TIMEZONE_UTC = "SELECT set_config('TimeZone', 'UTC', false)"
SET_STATEMENT_TIMEOUT = "SELECT set_config('statement_timeout', %s, false)"
# psycopg prepares a statement on its 6th run on a connection, and PostgreSQL then plans it
# for its parameters 5 times and on the 6th also builds a generic plan, once, to compare:
# over a year of chunks that one build took 90 to 150 ms (the 11th run of a query on every
# connection, the p95 of a year as days). A plan for the parameters is also the better
# one for time ranges over partitions: it leaves out the chunks outside the range.
SET_CUSTOM_PLANS = "SELECT set_config('plan_cache_mode', 'force_custom_plan', false)"
NO_STATEMENT_TIMEOUT = "SET LOCAL statement_timeout = 0"
PING = "SELECT 1"
ALL_DEVICE_IDS = "SELECT device_id FROM devices ORDER BY device_id"

KEY_BY_HASH = """
SELECT key_id, key_hash, scope FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL
"""
CREATE_KEY = """
INSERT INTO api_keys (key_hash, scope, name) VALUES (%s, %s, %s) RETURNING key_id
"""

STORAGE_MODE = "SELECT value FROM storage_settings WHERE key = 'storage_mode'"
RETENTION_SETTINGS = "SELECT key, value FROM storage_settings WHERE starts_with(key, 'retention_')"
# -infinity (nothing rolled up yet) does not fit a Python datetime: clamp it.
ROLLUP_WATERMARK = """
SELECT greatest(watermark, '0001-01-02 00:00:00+00') FROM rollup_state WHERE name = 'rollups'
"""

# %(now)s, %(default_interval_s)s and %(offline_after)s parameterize the status.
_DEVICE_COLUMNS = """
device_key, device_id, name, metadata, expected_interval_s, created_at, last_seen, last_seq,
seq_gaps,
CASE WHEN last_seen IS NULL THEN 'never_seen'
     WHEN last_seen >= %(now)s - make_interval(
         secs => coalesce(expected_interval_s, %(default_interval_s)s) * %(offline_after)s)
     THEN 'online'
     ELSE 'offline' END AS status,
attributes, attributes_at, gateway,
(SELECT g.device_id FROM devices g WHERE g.device_key = devices.gateway_key) AS gateway_id
"""
#: How many columns a device row has (a sorted listing's cursor key follows them).
DEVICE_COLUMNS = 14
GET_DEVICE = f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id = %(device_id)s"  # noqa: S608  (constant)
_LISTED = """
device_key, device_id, name, metadata, expected_interval_s, created_at, last_seen, last_seq,
seq_gaps, status, attributes, attributes_at, gateway, gateway_id
"""
# Tags as one JSON object for containment, which the GIN index on metadata serves. Listings
# with and without it are separate statements, so that neither plan serves the other.
_TAGGED = "AND metadata @> %(tags)s::jsonb"
# %(search)s: a substring of the id or the name, any case (strpos: no LIKE escaping needed).
_DEVICE_FILTERS = """
(%(status)s::text IS NULL OR status = %(status)s)
AND (%(search)s::text IS NULL
     OR strpos(lower(device_id), lower(%(search)s)) > 0
     OR strpos(lower(coalesce(name, '')), lower(%(search)s)) > 0)
"""


def _list_devices(tagged: bool) -> str:
    # The default order walks the device_id index and stops at the page's end.
    return f"""
SELECT * FROM (
    SELECT {_DEVICE_COLUMNS} FROM devices
    WHERE device_id > %(after)s {_TAGGED if tagged else ""}
) d
WHERE {_DEVICE_FILTERS}
ORDER BY device_id
LIMIT %(limit)s
"""  # noqa: S608  (constant fragments only)


#: By whether tags are given.
LIST_DEVICES = {tagged: _list_devices(tagged) for tagged in (False, True)}
# Other orders: by a sort key, ties by device id, a page after (%(after_key)s,
# %(after_id)s) when given. The key comes last as text, for the next cursor ('-infinity'
# has no Python datetime). No index serves these: each page sorts the registry.
_SORT_KEYS = {
    "device_id": ("device_id", "text"),
    # Never seen sorts as the earliest time, so that the key is never NULL.
    "last_seen": ("coalesce(last_seen, '-infinity')", "timestamptz"),
    "seq_gaps": ("seq_gaps", "bigint"),
}


def _list_devices_by(field: str, descending: bool, tagged: bool) -> str:
    key, kind = _SORT_KEYS[field]
    direction, after = ("DESC", "<") if descending else ("ASC", ">")
    return f"""
SELECT {_LISTED}, sort_key::text AS cursor_key FROM (
    SELECT {_DEVICE_COLUMNS}, {key} AS sort_key FROM devices
    WHERE true {_TAGGED if tagged else ""}
) d
WHERE {_DEVICE_FILTERS}
  AND (%(after_id)s::text IS NULL
       OR (sort_key, device_id) {after} (%(after_key)s::{kind}, %(after_id)s))
ORDER BY sort_key {direction}, device_id {direction}
LIMIT %(limit)s
"""  # noqa: S608  (constant keys and directions only)


# By sort parameter ("last_seen", "-last_seen"...; "device_id" is LIST_DEVICES) and tags.
LIST_DEVICES_SORTED = {
    (sign + field, tagged): _list_devices_by(field, descending=sign == "-", tagged=tagged)
    for field in _SORT_KEYS
    for sign in ("", "-")
    for tagged in (False, True)
    if sign + field != "device_id"
}

FLEET_STATUS = f"""
SELECT count(*),
       count(*) FILTER (WHERE status = 'online'),
       count(*) FILTER (WHERE status = 'offline'),
       count(*) FILTER (WHERE status = 'never_seen')
FROM (SELECT {_DEVICE_COLUMNS} FROM devices) d
"""  # noqa: S608  (constant)
FLEET_READINGS = """
SELECT count(*) FILTER (WHERE time >= %(minute_ago)s), count(*)
FROM readings WHERE time >= %(hour_ago)s AND time <= %(now)s
"""

DEVICE_KEY = "SELECT device_key FROM devices WHERE device_id = %s"
DEVICE_KEYS = "SELECT device_id, device_key FROM devices WHERE device_id = ANY(%s)"
METRIC_KEYS = """
SELECT metric_key, name, value_type FROM metrics WHERE name = ANY(%s) ORDER BY metric_key
"""
METRIC_KEYS_ALL = "SELECT metric_key, name, value_type FROM metrics ORDER BY metric_key"

DELETE_DEVICE_READINGS = "DELETE FROM readings WHERE device_key = %s"
DELETE_DEVICE_TYPED = "DELETE FROM readings_typed WHERE device_key = %s"
DELETE_DEVICE_ROLLUPS_1M = "DELETE FROM readings_1m WHERE device_key = %s"
DELETE_DEVICE_ROLLUPS_1H = "DELETE FROM readings_1h WHERE device_key = %s"
DELETE_DEVICE_ROLLUPS_1D = "DELETE FROM readings_1d WHERE device_key = %s"
DELETE_DEVICE_LATEST = "DELETE FROM latest_readings WHERE device_key = %s"
DELETE_DEVICE = "DELETE FROM devices WHERE device_key = %s"

# latest_readings holds the newest reading per device and metric (kept by the ingest
# writer), so these read one primary-key range per device instead of probing readings.
LATEST = """
SELECT m.name, l.time, l.value, l.value_bool, l.value_text, u.unit
FROM latest_readings l
JOIN metrics m ON m.metric_key = l.metric_key
LEFT JOIN metric_units u ON u.device_key = l.device_key AND u.metric_key = l.metric_key
WHERE l.device_key = %(device_key)s
  AND (%(metric_keys)s::int2[] IS NULL OR l.metric_key = ANY(%(metric_keys)s))
ORDER BY m.name
"""
# Values more than %(window)s before a device's last reading are left out, as documented.
# A full page is 10,000 devices and 40,000 values, so PostgreSQL writes the JSON itself:
# building as many Python objects took about 300 ms of the 400 ms such a page cost. Plain
# concatenation is cheaper than json_build_object, and a timestamp's text form (DateStyle
# ISO, which the caller sets) much cheaper than to_char. Names go through to_json (quoted
# and escaped); numbers are finite float8, whose text form is valid JSON, booleans are true
# or false, strings and units go through to_json. Returns the page's
# devices as a JSON array, whether another page follows, and the page's last device id;
# one device more than %(limit)s is read to learn the second.
FLEET_LATEST_JSON = """
WITH page AS (
    SELECT device_key, device_id, last_seen FROM devices
    WHERE device_id > %(after)s ORDER BY device_id LIMIT %(limit)s + 1
), shown AS (
    SELECT * FROM page ORDER BY device_id LIMIT %(limit)s
), items AS (
    SELECT s.device_id, string_agg(
        '{"metric":' || to_json(m.name)::text
            || ',"ts":"' || replace((l.time AT TIME ZONE 'UTC')::text, ' ', 'T')
            || 'Z","value":'
            || coalesce(l.value::text, l.value_bool::text, to_json(l.value_text)::text)
            || ',"unit":' || coalesce(to_json(u.unit)::text, 'null') || '}',
        ',' ORDER BY m.name) AS items
    FROM shown s
    LEFT JOIN (
        latest_readings l
        JOIN metrics m ON m.metric_key = l.metric_key
        LEFT JOIN metric_units u ON u.device_key = l.device_key AND u.metric_key = l.metric_key
    )
        ON l.device_key = s.device_key
       AND (%(metric_keys)s::int2[] IS NULL OR l.metric_key = ANY(%(metric_keys)s))
       AND l.time <= s.last_seen AND l.time > s.last_seen - %(window)s
    GROUP BY s.device_id
)
SELECT
    '[' || coalesce(string_agg(
        '{"device_id":' || to_json(device_id)::text
            || ',"values":[' || coalesce(items, '') || ']}',
        ',' ORDER BY device_id), '') || ']',
    (SELECT count(*) FROM page) > %(limit)s,
    max(device_id)
FROM items
"""

# A page read in slices on several connections (api.latest_page) shares one snapshot.
BEGIN_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
EXPORT_SNAPSHOT = "SELECT pg_export_snapshot()"
# The device ids that end each full slice of a page and that more devices follow.
FLEET_SLICE_ENDS = """
SELECT device_id FROM (
    SELECT device_id, row_number() OVER (ORDER BY device_id) AS n, count(*) OVER () AS total
    FROM (
        SELECT device_id FROM devices
        WHERE device_id > %(after)s ORDER BY device_id LIMIT %(limit)s
    ) page
) numbered
WHERE n %% %(slice)s = 0 AND n < total
ORDER BY n
"""

RAW_PAGE = """
SELECT time, value FROM readings
WHERE device_key = %(device_key)s AND metric_key = %(metric_key)s
  AND time >= %(start)s AND time < %(end)s AND time > %(after)s
ORDER BY time
LIMIT %(limit)s
"""

# Buckets aligned on the Unix epoch, so a bucket that is a multiple of a minute (an hour)
# is a whole number of 1-minute (1-hour) rollup rows, and raw and rolled-up agree.
_BUCKET = "date_bin(%(step)s::interval, t, '1970-01-01 00:00:00+00')"
_RAW_PART = """
SELECT time, metric_key, 1::int8, value, value, value, value, value FROM readings
WHERE device_key = %(device_key)s AND metric_key = ANY(%(metric_keys)s)
  AND time >= {lo} AND time < {hi}
"""
_GROUP = f"""
SELECT metric_key, {_BUCKET} AS b, sum(n)::int8, sum(s), min(lo), max(hi),
       (array_agg(f ORDER BY t))[1], (array_agg(l ORDER BY t DESC))[1]
FROM parts
GROUP BY 1, 2
"""  # noqa: S608  (constant)
_COMBINE = f"{_GROUP}ORDER BY 1, 2\n"
_ROLLUP_ROWS = """
SELECT bucket, metric_key, count, sum, min, max, first, last FROM {view}
WHERE device_key = %(device_key)s AND metric_key = ANY(%(metric_keys)s)
  AND bucket >= %(rollup_lo)s AND bucket < %(rollup_hi)s
"""
_HEAD_AND_TAIL = f"""
    {_RAW_PART.format(lo="%(start)s", hi="%(rollup_lo)s")}
    UNION ALL
    {_RAW_PART.format(lo="%(rollup_hi)s", hi="%(end)s")}
"""


def _from_rollup(view: str) -> str:
    # Rollup rows inside [rollup_lo, rollup_hi); raw rows for the partial head and tail.
    return f"""
WITH parts (t, metric_key, n, s, lo, hi, f, l) AS (
    {_ROLLUP_ROWS.format(view=view)}
    UNION ALL
    {_HEAD_AND_TAIL}
)
{_COMBINE}
"""


def _rollup_as_stored(view: str) -> str:
    # A bucket as wide as the rollup's is one rollup row: those are read as they are, and
    # only the raw rows of the partial head and tail are grouped. Grouping every rollup row
    # again, one array_agg per bucket, cost PostgreSQL 5 ms for a day of minutes.
    return f"""
SELECT metric_key, bucket, count, sum, min, max, first, last
FROM ({_ROLLUP_ROWS.format(view=view)}) r
UNION ALL (
    WITH parts (t, metric_key, n, s, lo, hi, f, l) AS ({_HEAD_AND_TAIL})
    {_GROUP}
)
ORDER BY 1, 2
"""  # noqa: S608  (constant view names only)


BUCKETS_FROM_1M = _from_rollup("readings_1m")
BUCKETS_FROM_1H = _from_rollup("readings_1h")
BUCKETS_OF_1M = _rollup_as_stored("readings_1m")
BUCKETS_OF_1H = _rollup_as_stored("readings_1h")
BUCKETS_FROM_1D = _from_rollup("readings_1d")
BUCKETS_OF_1D = _rollup_as_stored("readings_1d")
BUCKETS_FROM_RAW = f"""
WITH parts (t, metric_key, n, s, lo, hi, f, l) AS (
    {_RAW_PART.format(lo="%(start)s", hi="%(end)s")}
)
{_COMBINE}
"""

_EXPORT_ROWS = """
FROM readings
WHERE device_key = %(device_key)s AND metric_key = %(metric_key)s
  AND time >= %(start)s AND time < %(end)s
ORDER BY time
"""
_RFC3339_UTC = """to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
# COPY takes no server-side parameters: psycopg binds these client-side, quoted as literals.
COPY_CSV = f"""
COPY (SELECT %(device_id)s::text, %(metric)s::text, {_RFC3339_UTC}, value, %(unit)s::text
      {_EXPORT_ROWS})
TO STDOUT (FORMAT csv)
"""
#: One JSON document a line, exactly as PostgreSQL writes it: CSV quotes a field only when
#: it holds the delimiter, the quote or a line break, and JSON text holds none of these
#: control characters raw (text COPY would double every backslash of an escape).
NDJSON_COPY_OPTIONS = "(FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')"
COPY_NDJSON = f"""
COPY (SELECT json_build_object('device_id', %(device_id)s::text, 'metric', %(metric)s::text,
                               'ts', {_RFC3339_UTC}, 'value', value, 'unit', %(unit)s::text)
      {_EXPORT_ROWS})
TO STDOUT {NDJSON_COPY_OPTIONS}
"""

REJECTS = """
SELECT id, received_at, source, device_id, item_index, reason, detail, payload
FROM dead_letters
WHERE id < %(before)s
  AND (%(device_id)s::text IS NULL OR device_id = %(device_id)s)
  AND (%(reason)s::text IS NULL OR reason = %(reason)s)
  AND (%(source)s::text IS NULL OR source = %(source)s)
  AND (%(start)s::timestamptz IS NULL OR received_at >= %(start)s)
  AND (%(end)s::timestamptz IS NULL OR received_at < %(end)s)
ORDER BY id DESC
LIMIT %(limit)s
"""
