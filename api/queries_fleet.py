"""Statements of fleet aggregates: one metric across the devices that tags select.

The devices are those whose metadata contains the tags' object (the GIN index on metadata
serves it); statements with and without tags are separate, so that neither plan serves
the other. A device's group is its metadata value of ``%(group_by)s`` (NULL without it).
Rollup rows cover the whole buckets of the range, raw rows the partial head and tail, as
for one device (:mod:`api.buckets`), so that the sums and counts are those of the raw rows.
"""

from __future__ import annotations

__all__ = ["FLEET_BUCKETS", "FLEET_SELECTION", "METRIC"]

_TAGS = "metadata @> %(tags)s::jsonb"

#: The metric's key and type: only numbers aggregate across devices.
METRIC = "SELECT metric_key, value_type FROM metrics WHERE name = %s"


def _selection(tagged: bool) -> str:
    # Per group: its devices, and the units they gave the metric.
    return f"""
SELECT d.metadata ->> %(group_by)s, count(*), array_remove(array_agg(DISTINCT u.unit), NULL)
FROM devices d
LEFT JOIN metric_units u ON u.device_key = d.device_key AND u.metric_key = %(metric_key)s
WHERE {_TAGS if tagged else "true"}
GROUP BY 1
"""  # noqa: S608  (constant fragments only)


def _buckets(view: str, tagged: bool) -> str:
    raw = """
    SELECT r.time, sel.grp, 1::int8, r.value, r.value, r.value
    FROM readings r JOIN sel ON sel.device_key = r.device_key
    WHERE r.metric_key = %(metric_key)s AND r.time >= {lo} AND r.time < {hi}
    """
    return f"""
WITH sel AS (
    SELECT device_key, metadata ->> %(group_by)s AS grp FROM devices
    WHERE {_TAGS if tagged else "true"}
), parts (t, grp, n, s, lo, hi) AS (
    SELECT r.bucket, sel.grp, r.count, r.sum, r.min, r.max
    FROM {view} r JOIN sel ON sel.device_key = r.device_key
    WHERE r.metric_key = %(metric_key)s
      AND r.bucket >= %(rollup_lo)s AND r.bucket < %(rollup_hi)s
    UNION ALL
    {raw.format(lo="%(start)s", hi="%(rollup_lo)s")}
    UNION ALL
    {raw.format(lo="%(rollup_hi)s", hi="%(end)s")}
)
SELECT grp, date_bin(%(step)s::interval, t, '1970-01-01 00:00:00+00') AS b,
       sum(n)::int8, sum(s), min(lo), max(hi)
FROM parts
GROUP BY 1, 2
ORDER BY 1 NULLS LAST, 2
"""  # noqa: S608  (constant fragments only)


#: By whether tags are given.
FLEET_SELECTION = {tagged: _selection(tagged) for tagged in (False, True)}
#: By source ("raw" reads the range from raw rows alone) and whether tags are given.
FLEET_BUCKETS = {
    (source, tagged): _buckets(view, tagged)
    for source, view in (
        ("raw", "readings_1m"),
        ("rollup_1m", "readings_1m"),
        ("rollup_1h", "readings_1h"),
        ("rollup_1d", "readings_1d"),
    )
    for tagged in (False, True)
}
