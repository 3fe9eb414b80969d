"""The SQL of every dashboard panel and variable, with Grafana's macros and variables.

The same statements run on both storage paths: ``readings_1m`` and ``readings_1h`` are
continuous aggregates on TimescaleDB and tables on plain PostgreSQL, with the same columns.
Grafana expands ``$__timeFilter``, ``$__timeGroupAlias`` and ``$__interval_ms`` before the
statement reaches the database; variables are quoted with ``:sqlstring`` (Grafana doubles
single quotes), so a value never becomes SQL.

Time series choose their source from the panel's interval: raw readings below a minute,
the 1-minute rollup below an hour, the 1-hour rollup from an hour up. Grafana's intervals
are rounded to 1m, 2m, 5m... 1h, 2h..., so a bucket of a minute or more is a whole number of
rollup buckets, and ``$__timeGroup`` aligns buckets on the Unix epoch as the rollups are.
The guards are constants once expanded (``30000 < 60000``), so PostgreSQL plans only the
branch that is on.
"""

from __future__ import annotations

__all__ = [
    "DEVICE_ALERT_EVENTS",
    "DEVICE_LATEST",
    "DEVICE_METRIC_SERIES",
    "DEVICE_METRIC_UNIT",
    "DEVICE_NETWORK_RATE",
    "DEVICE_REJECTS",
    "DEVICE_STATUS",
    "DEVICE_VARIABLE",
    "FIRING_ALERTS",
    "FLEET_BY_TAG",
    "FLEET_MAP",
    "FLEET_METRIC_UNIT",
    "FLEET_METRIC_VARIABLE",
    "FLEET_STATUS",
    "FRESHNESS",
    "GROUP_BY_VARIABLE",
    "METRIC_VARIABLE",
    "READINGS_PER_SECOND",
    "RECENT_REJECTS",
    "REJECTS_BY_REASON",
    "REJECTS_OVER_TIME",
    "RESOLUTION_VARIABLE",
    "SILENT_DEVICES",
    "TAG_VARIABLE",
]

# The API's rule (api/queries.py): online when heard within offline_after expected
# intervals (the device's own, or the default); the two numbers are dashboard constants.
_STATUS = """
CASE WHEN d.last_seen IS NULL THEN 'never_seen'
     WHEN d.last_seen >= now() - make_interval(secs =>
          coalesce(d.expected_interval_s, ${default_interval_s:sqlstring}::int)
          * ${offline_after:sqlstring}::float8)
     THEN 'online'
     ELSE 'offline' END"""

_SOURCE_RAW = "$__interval_ms < 60000"
_SOURCE_1M = "$__interval_ms >= 60000 AND $__interval_ms < 3600000"
_SOURCE_1H = "$__interval_ms >= 3600000"

FLEET_STATUS = f"""
SELECT count(*) AS "devices",
       count(*) FILTER (WHERE status = 'online') AS "online",
       count(*) FILTER (WHERE status = 'offline') AS "offline",
       count(*) FILTER (WHERE status = 'never_seen') AS "never seen"
FROM (SELECT {_STATUS} AS status FROM devices d) s
"""  # noqa: S608  (constant fragments only)

# Fleet-wide, so never from raw rows: at 100,000 devices six hours of them are billions of
# rows (benchmarks/scale.py). The panel's min interval is 1m.
READINGS_PER_SECOND = f"""
WITH parts (t, n) AS (
    SELECT bucket, count FROM readings_1m
    WHERE {_SOURCE_1M} AND $__timeFilter(bucket)
    UNION ALL
    SELECT bucket, count FROM readings_1h
    WHERE {_SOURCE_1H} AND $__timeFilter(bucket)
)
SELECT $__timeGroupAlias(t, $__interval, NULL),
       sum(n) / ($__interval_ms / 1000.0) AS "readings/s"
FROM parts
GROUP BY 1
ORDER BY 1
"""  # noqa: S608  (constant fragments only)

REJECTS_OVER_TIME = """
SELECT $__timeGroupAlias(received_at, $__interval, 0), reason AS metric, count(*) AS rejects
FROM dead_letters
WHERE $__timeFilter(received_at)
GROUP BY 1, 2
ORDER BY 1
"""

REJECTS_BY_REASON = """
SELECT reason, count(*) AS rejects
FROM dead_letters
WHERE $__timeFilter(received_at)
GROUP BY reason
ORDER BY rejects DESC, reason
"""

# Devices report their position as the metrics "latitude" and "longitude" (degrees, WGS 84).
FLEET_MAP = f"""
SELECT d.device_id, {_STATUS} AS status, d.last_seen,
       lat.value AS latitude, lon.value AS longitude
FROM devices d
JOIN latest_readings lat ON lat.device_key = d.device_key
    AND lat.metric_key = (SELECT metric_key FROM metrics WHERE name = 'latitude')
JOIN latest_readings lon ON lon.device_key = d.device_key
    AND lon.metric_key = (SELECT metric_key FROM metrics WHERE name = 'longitude')
WHERE lat.value BETWEEN -90 AND 90 AND lon.value BETWEEN -180 AND 180
ORDER BY d.device_id
"""  # noqa: S608  (constant fragments only)

SILENT_DEVICES = f"""
SELECT device_id, name, status, last_seen, expected_interval_s
FROM (
    SELECT d.device_id, d.name, {_STATUS} AS status, d.last_seen,
           coalesce(d.expected_interval_s, ${{default_interval_s:sqlstring}}::int)
               AS expected_interval_s
    FROM devices d
) s
WHERE status <> 'online'
ORDER BY last_seen DESC NULLS LAST, device_id
LIMIT 200
"""  # noqa: S608  (constant fragments only)

DEVICE_VARIABLE = "SELECT device_id FROM devices ORDER BY device_id"

# The numeric metrics: those that the series panels draw.
METRIC_VARIABLE = """
SELECT m.name
FROM latest_readings l
JOIN metrics m ON m.metric_key = l.metric_key
JOIN devices d ON d.device_key = l.device_key
WHERE d.device_id = ${device:sqlstring} AND m.value_type = 'number'
ORDER BY m.name
"""

# A bucket at least twice the device's interval normally holds a reading: an empty one is
# a gap worth drawing, not jitter.
RESOLUTION_VARIABLE = """
SELECT (2 * coalesce(expected_interval_s, ${default_interval_s:sqlstring}::int))::text || 's'
FROM devices
WHERE device_id = ${device:sqlstring}
"""

DEVICE_STATUS = f"""
SELECT {_STATUS} AS status, d.last_seen AS "last seen", d.seq_gaps AS "sequence gaps",
       coalesce(d.expected_interval_s, ${{default_interval_s:sqlstring}}::int)
           AS "expected interval"
FROM devices d
WHERE d.device_id = ${{device:sqlstring}}
"""  # noqa: S608  (constant fragments only)

# Every metric, whatever its type: booleans as true or false, strings as they are.
DEVICE_LATEST = """
SELECT m.name AS metric, coalesce(l.value::text, l.value_bool::text, l.value_text) AS value,
       u.unit, l.time AS "reading time"
FROM latest_readings l
JOIN metrics m ON m.metric_key = l.metric_key
JOIN devices d ON d.device_key = l.device_key
LEFT JOIN metric_units u ON u.device_key = l.device_key AND u.metric_key = l.metric_key
WHERE d.device_id = ${device:sqlstring} AND m.name = ANY(ARRAY[${metric:sqlstring}]::text[])
ORDER BY m.name
"""

# Rollup rows carry count, sum, min and max, raw rows count as one, so avg = sum / count
# over any mix. On plain PostgreSQL the 1-minute rollup is refreshed every few seconds up
# to a minute ago: raw rows after a series' last rolled-up minute fill the tail (on
# TimescaleDB the continuous aggregate is real-time and that branch finds nothing).
DEVICE_METRIC_SERIES = f"""
WITH sel AS (
    SELECT d.device_key, m.metric_key
    FROM devices d, metrics m
    WHERE d.device_id = ${{device:sqlstring}} AND m.name = ANY(ARRAY[${{metric:sqlstring}}]::text[])
), parts (t, n, s, lo, hi) AS (
    SELECT r.time, 1::int8, r.value, r.value, r.value
    FROM sel JOIN readings r USING (device_key, metric_key)
    WHERE {_SOURCE_RAW} AND $__timeFilter(r.time)
    UNION ALL
    SELECT r.bucket, r.count, r.sum, r.min, r.max
    FROM sel JOIN readings_1m r USING (device_key, metric_key)
    WHERE {_SOURCE_1M} AND $__timeFilter(r.bucket)
    UNION ALL
    SELECT r.time, 1::int8, r.value, r.value, r.value
    FROM sel JOIN readings r USING (device_key, metric_key)
    WHERE {_SOURCE_1M} AND $__timeFilter(r.time)
      AND r.time >= (SELECT coalesce(max(x.bucket) + interval '1 minute', '-infinity')
                     FROM readings_1m x
                     WHERE x.device_key = sel.device_key AND x.metric_key = sel.metric_key)
    UNION ALL
    SELECT r.bucket, r.count, r.sum, r.min, r.max
    FROM sel JOIN readings_1h r USING (device_key, metric_key)
    WHERE {_SOURCE_1H} AND $__timeFilter(r.bucket)
)
SELECT $__timeGroupAlias(t, $__interval, NULL),
       sum(s) / sum(n) AS avg, min(lo) AS min, max(hi) AS max
FROM parts
GROUP BY 1
ORDER BY 1
"""  # noqa: S608  (constant fragments only)

# The device's unit of the panel's metric (NULL: none given), which the panel takes as its
# unit ("Config from query results"): axis and tooltip show it.
DEVICE_METRIC_UNIT = """
SELECT max(u.unit) AS unit
FROM metric_units u
JOIN devices d ON d.device_key = u.device_key
JOIN metrics m ON m.metric_key = u.metric_key
WHERE d.device_id = ${device:sqlstring} AND m.name = ANY(ARRAY[${metric:sqlstring}]::text[])
"""

# The agent's network sensor reports byte counters since boot (``<name>_rx_bytes``,
# ``<name>_tx_bytes``): drawn as bytes per second, as the API's agg=rate computes it. A part
# (raw reading or rollup row, which keeps first, last and the sum of what the counter lost
# at its resets) starting below the last value before it is a reset; the rise from one
# bucket's last value to the next bucket's first belongs to the later bucket.
DEVICE_NETWORK_RATE = f"""
WITH sel AS (
    SELECT d.device_key, m.metric_key, m.name
    FROM devices d, metrics m
    WHERE d.device_id = ${{device:sqlstring}} AND right(m.name, 9) IN ('_rx_bytes', '_tx_bytes')
), parts (t, metric, f, l, r) AS (
    SELECT r.time, sel.name, r.value, r.value, 0::float8
    FROM sel JOIN readings r USING (device_key, metric_key)
    WHERE {_SOURCE_RAW} AND $__timeFilter(r.time)
    UNION ALL
    SELECT r.bucket, sel.name, r.first, r.last, r.resets
    FROM sel JOIN readings_1m r USING (device_key, metric_key)
    WHERE {_SOURCE_1M} AND $__timeFilter(r.bucket)
    UNION ALL
    SELECT r.time, sel.name, r.value, r.value, 0::float8
    FROM sel JOIN readings r USING (device_key, metric_key)
    WHERE {_SOURCE_1M} AND $__timeFilter(r.time)
      AND r.time >= (SELECT coalesce(max(x.bucket) + interval '1 minute', '-infinity')
                     FROM readings_1m x
                     WHERE x.device_key = sel.device_key AND x.metric_key = sel.metric_key)
    UNION ALL
    SELECT r.bucket, sel.name, r.first, r.last, r.resets
    FROM sel JOIN readings_1h r USING (device_key, metric_key)
    WHERE {_SOURCE_1H} AND $__timeFilter(r.bucket)
), ordered AS (
    SELECT *, lag(l) OVER (PARTITION BY metric ORDER BY t) AS pl FROM parts
)
SELECT $__timeGroupAlias(t, $__interval, NULL), metric,
       ((array_agg(l ORDER BY t DESC))[1] - (array_agg(coalesce(pl, f) ORDER BY t))[1]
        + sum(r + CASE WHEN f < pl THEN pl ELSE 0 END)) / ($__interval_ms / 1000.0) AS rate
FROM ordered
GROUP BY 1, 2
ORDER BY 1
"""  # noqa: S608  (constant fragments only)

DEVICE_REJECTS = """
SELECT received_at, source, reason, item_index, detail
FROM dead_letters
WHERE device_id = ${device:sqlstring} AND $__timeFilter(received_at)
ORDER BY received_at DESC
LIMIT 200
"""

RECENT_REJECTS = """
SELECT received_at, source, device_id, reason, detail
FROM dead_letters
WHERE $__timeFilter(received_at)
ORDER BY received_at DESC
LIMIT 200
"""

FRESHNESS = """
SELECT extract(epoch FROM now() - max(last_seen))::float8 AS "since last reading"
FROM devices
"""

# Fleet aggregates by tag, as GET /v1/aggregate computes them: the devices whose metadata
# holds the tag ("all": every device), one series per value of the group_by key ("none": one
# series), the average of a numeric metric across them per bucket. Fleet-wide like the
# readings rate, so from the rollups only (the panel's min interval is 1m): a tag may
# select every device, and six hours of their raw rows at 1 Hz are billions. The devices
# are joined once, after the union: as a CTE joined in each branch they had no statistics,
# and at 100,000 devices the planner expected 100 million rows and sorted to disk.
_TAGGED = """
(${tag:sqlstring} = 'all'
 OR d.metadata @> jsonb_build_object(
     split_part(${tag:sqlstring}, ':', 1),
     substr(${tag:sqlstring}, strpos(${tag:sqlstring}, ':') + 1)))"""

TAG_VARIABLE = """
SELECT 'all'
UNION ALL
(SELECT DISTINCT m.key || ':' || m.value
 FROM devices d, jsonb_each_text(d.metadata) m
 ORDER BY 1)
"""

GROUP_BY_VARIABLE = """
SELECT 'none'
UNION ALL
(SELECT DISTINCT jsonb_object_keys(metadata) FROM devices ORDER BY 1)
"""

FLEET_METRIC_VARIABLE = "SELECT name FROM metrics WHERE value_type = 'number' ORDER BY name"

FLEET_BY_TAG = f"""
WITH m AS (
    SELECT metric_key FROM metrics WHERE name = ${{fleet_metric:sqlstring}}
), parts (t, device_key, n, s) AS (
    SELECT r.bucket, r.device_key, r.count, r.sum
    FROM readings_1m r
    WHERE {_SOURCE_1M} AND r.metric_key = (SELECT metric_key FROM m)
      AND $__timeFilter(r.bucket)
    UNION ALL
    SELECT r.bucket, r.device_key, r.count, r.sum
    FROM readings_1h r
    WHERE {_SOURCE_1H} AND r.metric_key = (SELECT metric_key FROM m)
      AND $__timeFilter(r.bucket)
)
SELECT $__timeGroupAlias(p.t, $__interval, NULL),
       CASE WHEN ${{group_by:sqlstring}} = 'none' THEN 'all devices'
            ELSE coalesce(d.metadata ->> ${{group_by:sqlstring}}, '(none)') END AS metric,
       sum(p.s) / sum(p.n) AS avg
FROM parts p JOIN devices d ON d.device_key = p.device_key
WHERE {_TAGGED}
GROUP BY 1, 2
ORDER BY 1, 2
"""  # noqa: S608  (constant fragments only)

FLEET_METRIC_UNIT = f"""
SELECT max(u.unit) AS unit
FROM metric_units u
JOIN devices d ON d.device_key = u.device_key
JOIN metrics m ON m.metric_key = u.metric_key
WHERE m.name = ${{fleet_metric:sqlstring}} AND {_TAGGED}
"""  # noqa: S608  (constant fragments only)

# The alerts firing now, the worst first (alert_states, kept by the evaluator in ingest).
FIRING_ALERTS = """
SELECT s.firing_since AS "firing since", r.severity AS "severity", r.name AS "rule",
       s.device_id AS "device", s.value AS "value",
       CASE WHEN s.acknowledged_at IS NULL THEN 'no' ELSE 'yes' END AS "acknowledged"
FROM alert_states s JOIN alert_rules r USING (rule_id)
WHERE s.state = 'firing'
ORDER BY CASE r.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END,
         s.firing_since DESC, s.device_id
LIMIT 200
"""

# An annotation per alert event of the device in the range (index on device_id, at);
# Grafana reads tags as a comma-separated list.
DEVICE_ALERT_EVENTS = """
SELECT e.at AS "time",
       e.event || ': ' || e.rule_name
       || coalesce(' (value ' || trim_scale(round(e.value::numeric, 3))::text || ')', '')
       || CASE WHEN e.detail = '' THEN '' ELSE ', ' || e.detail END AS "text",
       e.severity || ',' || e.event AS "tags"
FROM alert_events e
WHERE e.device_id = ${device:sqlstring} AND $__timeFilter(e.at)
ORDER BY e.at, e.event_id
LIMIT 1000
"""
