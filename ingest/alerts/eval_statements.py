"""SQL of one evaluation, set-based: every rule over every device in its scope at once.

Every value is a bound parameter: ``%(now)s`` (the evaluation's time), ``%(rollup_until)s``
(the 1-minute rollup is complete before it), ``%(default_interval_s)s``, ``%(api_url)s``
and ``%(holder)s``. Rule kinds are constants of this module, never input.

An evaluation fills three temporary tables, in one transaction with everything it writes:

0. ``alert_windows``: the aggregate of each (device, metric, window) some threshold rule
   needs, computed once however many rules share it;
1. ``alert_observed``: one row per (rule, device) in scope that breaches now or has an
   active (pending or firing) alert: the value, whether it is known, whether it breaches
   the threshold and whether it still holds by the clear threshold (hysteresis);
2. ``alert_changes``: the (rule, device) whose state changes, or whose firing alert is due
   a notification, with the state's new columns.

Then the states, the events and the outbox rows are written from ``alert_changes``.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "AGGREGATE_WINDOWS",
    "APPLY_STATES",
    "CAGG_SOURCE",
    "CREATE_TEMP_TABLES",
    "DECIDE",
    "INSERT_EVENTS",
    "INSERT_NOTIFICATIONS",
    "LONGEST_WINDOW",
    "NO_RUNTIME_EXCLUSION",
    "OBSERVE_NO_DATA",
    "OBSERVE_OFFLINE",
    "OBSERVE_THRESHOLD",
    "RECORD_EVALUATOR",
    "ROLLUP_WATERMARK",
]

# Keyed, so that the statements joining them look rows up by key whatever the planner
# guesses of their size (temporary tables have no statistics).
CREATE_TEMP_TABLES: Final = """
CREATE TEMP TABLE IF NOT EXISTS alert_windows (
    device_key int4 NOT NULL, metric_key int2 NOT NULL, window_s int4 NOT NULL,
    n float8, total float8, mn float8, mx float8,
    PRIMARY KEY (device_key, metric_key, window_s)
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS alert_observed (
    rule_id bigint NOT NULL, device_key int4 NOT NULL, device_id text NOT NULL,
    value float8, known boolean NOT NULL, breach boolean NOT NULL, holds boolean NOT NULL,
    PRIMARY KEY (rule_id, device_key)
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS alert_changes (
    rule_id bigint NOT NULL, device_key int4 NOT NULL, device_id text NOT NULL,
    old_state text NOT NULL, new_state text NOT NULL, since timestamptz NOT NULL,
    pending_since timestamptz, firing_since timestamptz, resolved_at timestamptz,
    value float8, current float8, notified_at timestamptz,
    notify text, repeat boolean NOT NULL, detail text NOT NULL,
    PRIMARY KEY (rule_id, device_key)
) ON COMMIT DELETE ROWS
"""

# -infinity (nothing rolled up yet) does not fit a Python datetime: clamp it.
ROLLUP_WATERMARK: Final = """
SELECT greatest(watermark, '0001-01-02 00:00:00+00') FROM rollup_state WHERE name = 'rollups'
"""

# TimescaleDB: the 1-minute aggregate's materialized hypertable, and how far it is complete.
# The evaluator reads that table below the watermark (and raw readings after it), as it
# reads plain PostgreSQL's rollup table: through the view, every probe would pay for its
# real-time union and two watermark lookups, four times the cost of the probe itself.
CAGG_SOURCE: Final = """
SELECT c.materialization_hypertable_schema, c.materialization_hypertable_name,
       greatest(coalesce(_timescaledb_functions.to_timestamp(
                             _timescaledb_functions.cagg_watermark(h.id)), '-infinity'),
                '0001-01-02 00:00:00+00')
FROM timescaledb_information.continuous_aggregates c
JOIN _timescaledb_catalog.hypertable h
  ON h.schema_name = c.materialization_hypertable_schema
 AND h.table_name = c.materialization_hypertable_name
WHERE c.view_schema = current_schema() AND c.view_name = 'readings_1m'
"""

# The longest window of a live threshold rule: every probe of AGGREGATE_WINDOWS is also
# bounded by the constant %(since)s (now minus this), so that the planner leaves out, once,
# the partitions or chunks no window reaches; on TimescaleDB the evaluator also turns off
# the chunks' exclusion at run time, which would otherwise be paid for at every probe.
LONGEST_WINDOW: Final = """
SELECT coalesce(max(window_s), 0) FROM alert_rules
WHERE kind = 'threshold' AND enabled AND deleted_at IS NULL
"""
NO_RUNTIME_EXCLUSION: Final = (
    "SELECT set_config('timescaledb.enable_runtime_exclusion', 'off', true)"
)

Kind = Literal["threshold", "no_data", "offline"]

# What each kind's statements read of a (rule, device) pair, carried in the pair itself: a
# freshly changed alert_rules has no statistics yet, and a statement that joined the rules
# again could be planned as if there were one, rescanning every pair for each rule.
_CARRIED: Final[dict[Kind, str]] = {
    "threshold": "r.metric_key, r.agg, r.window_s, r.op, r.threshold, r.clear_threshold,"
    " r.low, r.high, r.clear_low, r.clear_high",
    "no_data": "r.metric, r.metric_key, r.for_s, greatest(d.created_at, r.created_at) AS since",
    "offline": "d.last_seen, r.factor * coalesce(r.interval_s, d.expected_interval_s,"
    " %(default_interval_s)s) AS limit_s",
}


def _scoped(kind: Kind) -> str:
    """CTE ``pairs``: each live rule of ``kind`` with each device in its scope.

    Three joins, one per kind of scope, so that each takes its own plan: an equality for
    one device, the metadata index for a selector, a plain product for the whole fleet.
    """
    columns = f"r.rule_id, d.device_key, d.device_id, {_CARRIED[kind]}"
    return f"""
rules AS (
    SELECT r.*, m.metric_key
    FROM alert_rules r LEFT JOIN metrics m ON m.name = r.metric
    WHERE r.kind = '{kind}' AND r.enabled AND r.deleted_at IS NULL
), pairs AS MATERIALIZED (
    SELECT {columns}
    FROM rules r JOIN devices d ON d.device_id = r.device_id
    UNION ALL
    SELECT {columns}
    FROM rules r JOIN devices d ON d.metadata @> r.selector
    UNION ALL
    SELECT {columns}
    FROM rules r CROSS JOIN devices d
    WHERE r.device_id IS NULL AND r.selector IS NULL
)"""  # noqa: S608  (the kind is one of three constants)


# Only what breaches, or what has an alert to keep or end, is worth a row.
_WORTH_A_ROW = """
WHERE breach OR EXISTS (
    SELECT 1 FROM alert_states s
    WHERE s.state IN ('pending', 'firing')
      AND s.rule_id = j.rule_id AND s.device_key = j.device_key
)
"""


def _compare(threshold: str, low: str, high: str) -> str:
    return f"""coalesce(CASE p.op
        WHEN '>' THEN p.value > p.{threshold}
        WHEN '>=' THEN p.value >= p.{threshold}
        WHEN '<' THEN p.value < p.{threshold}
        WHEN '<=' THEN p.value <= p.{threshold}
        ELSE p.value < p.{low} OR p.value > p.{high}
    END, false)"""


# Aggregates over [now - window_s, now] per (device, metric, window) that some rule needs,
# each computed once however many rules share it: whole minutes from the 1-minute rollup
# where it is complete (before %(rollup_until)s), raw rows for the partial minute at the
# start and for everything after. {rollup} is the rollup's table, an identifier the
# evaluator composes in (readings_1m, or the materialized hypertable of TimescaleDB's).
# Each part is an index probe on (device_key, metric_key, time) or (device_key, metric_key,
# bucket). `last` needs no aggregate: latest_readings has it.
AGGREGATE_WINDOWS: Final = f"""
WITH {_scoped("threshold")},
windows AS (
    SELECT DISTINCT device_key, metric_key, window_s
    FROM pairs
    WHERE agg <> 'last' AND metric_key IS NOT NULL
), spans AS (
    SELECT w.*, b.lo, b.mid_lo, greatest(b.mid_lo, %(rollup_until)s) AS mid_hi
    FROM windows w
    CROSS JOIN LATERAL (
        SELECT %(now)s - make_interval(secs => w.window_s) AS lo,
               to_timestamp(ceil(extract(epoch FROM %(now)s - make_interval(secs => w.window_s))
                                 / 60) * 60) AS mid_lo
    ) b
)
INSERT INTO alert_windows (device_key, metric_key, window_s, n, total, mn, mx)
SELECT s.device_key, s.metric_key, s.window_s, a.n, a.total, a.mn, a.mx
FROM spans s
CROSS JOIN LATERAL (
    SELECT sum(n)::float8 AS n, sum(t) AS total, min(mn) AS mn, max(mx) AS mx
    FROM (
        SELECT count, sum, min, max FROM {{rollup}}
        WHERE device_key = s.device_key AND metric_key = s.metric_key
          AND bucket >= s.mid_lo AND bucket < s.mid_hi AND bucket >= %(since)s
        UNION ALL
        SELECT 1, value, value, value FROM readings
        WHERE device_key = s.device_key AND metric_key = s.metric_key
          AND time >= s.lo AND time < s.mid_lo AND time <= %(now)s AND time >= %(since)s
        UNION ALL
        SELECT 1, value, value, value FROM readings
        WHERE device_key = s.device_key AND metric_key = s.metric_key
          AND time >= s.mid_hi AND time <= %(now)s AND time >= %(since)s
    ) parts (n, t, mn, mx)
) a
"""  # noqa: S608  (constant fragments only)

# Each pair's value: its window's aggregate (AGGREGATE_WINDOWS ran first), or the latest
# reading within the window for `last`; both looked up by key.
OBSERVE_THRESHOLD: Final = f"""
WITH {_scoped("threshold")},
measured AS (
    SELECT p.*,
           CASE p.agg
               WHEN 'count' THEN coalesce(a.n, 0)
               WHEN 'avg' THEN a.total / nullif(a.n, 0)
               WHEN 'min' THEN a.mn
               WHEN 'max' THEN a.mx
               ELSE l.value
           END AS value
    FROM pairs p
    LEFT JOIN alert_windows a
        ON a.device_key = p.device_key AND a.metric_key = p.metric_key
       AND a.window_s = p.window_s
    LEFT JOIN latest_readings l
        ON p.agg = 'last' AND l.device_key = p.device_key AND l.metric_key = p.metric_key
       AND l.time >= %(now)s - make_interval(secs => p.window_s)
), judged AS (
    SELECT p.rule_id, p.device_key, p.device_id, p.value,
           {_compare("threshold", "low", "high")} AS breach,
           {_compare("clear_threshold", "clear_low", "clear_high")} AS holds
    FROM measured p
)
INSERT INTO alert_observed (rule_id, device_key, device_id, value, known, breach, holds)
SELECT rule_id, device_key, device_id, value, value IS NOT NULL, breach, holds
FROM judged j
{_WORTH_A_ROW}
"""  # noqa: S608  (constant fragments only)

# Seconds since the newest reading of the metric (any metric when the rule names none);
# a device that never sent one counts from its registration or the rule's creation,
# whichever came later.
OBSERVE_NO_DATA: Final = f"""
WITH {_scoped("no_data")},
measured AS (
    SELECT p.rule_id, p.device_key, p.device_id,
           extract(epoch FROM %(now)s - coalesce(n.newest, p.since))::float8 AS value,
           p.for_s
    FROM pairs p
    LEFT JOIN LATERAL (
        SELECT max(l.time) AS newest FROM latest_readings l
        WHERE l.device_key = p.device_key AND (p.metric IS NULL OR l.metric_key = p.metric_key)
    ) n ON true
), judged AS (
    SELECT m.*, m.value >= m.for_s AS breach FROM measured m
)
INSERT INTO alert_observed (rule_id, device_key, device_id, value, known, breach, holds)
SELECT rule_id, device_key, device_id, value, true, breach, breach
FROM judged j
{_WORTH_A_ROW}
"""  # noqa: S608  (constant fragments only)

# Seconds since the device was last heard, against factor x its interval (the rule's own,
# else the device's expected one, else the default). Never seen is not offline.
OBSERVE_OFFLINE: Final = f"""
WITH {_scoped("offline")},
measured AS (
    SELECT p.rule_id, p.device_key, p.device_id,
           extract(epoch FROM %(now)s - p.last_seen)::float8 AS value, p.limit_s
    FROM pairs p
), judged AS (
    SELECT m.*, coalesce(m.value > m.limit_s, false) AS breach FROM measured m
)
INSERT INTO alert_observed (rule_id, device_key, device_id, value, known, breach, holds)
SELECT rule_id, device_key, device_id, value, value IS NOT NULL, breach, breach
FROM judged j
{_WORTH_A_ROW}
"""  # noqa: S608  (constant fragments only)

# The state machine, ok -> pending -> firing -> resolved, for every observed or active
# (rule, device):
# - ok or resolved: a breach makes it pending, or firing at once when the rule holds for 0 s
#   (no-data and offline rules always: their condition has its duration built in);
# - pending: firing once the breach has lasted for_s, ok as soon as it does not breach;
# - firing: resolved when the value is known and no longer holds by the clear threshold
#   (a value that hovers between the two thresholds keeps it firing), or when the device
#   left the rule's scope or the rule was disabled or deleted.
# A firing alert notifies on its transition (unless silenced) and again every renotify_s
# (unless silenced or acknowledged), or as soon as a silence ends if it never notified; a
# resolution notifies when its firing did.
DECIDE: Final = """
INSERT INTO alert_changes (rule_id, device_key, device_id, old_state, new_state, since,
                           pending_since, firing_since, resolved_at, value, current,
                           notified_at, notify, repeat, detail)
WITH keys AS (
    SELECT rule_id, device_key FROM alert_observed
    UNION
    SELECT rule_id, device_key FROM alert_states WHERE state IN ('pending', 'firing')
), seen AS (
    SELECT k.rule_id, k.device_key, coalesce(o.device_id, s.device_id) AS device_id,
           o.rule_id IS NOT NULL AS in_scope, o.value AS current, o.known, o.breach, o.holds,
           coalesce(s.state, 'ok') AS cur, s.since, s.pending_since, s.firing_since,
           s.resolved_at, s.value, s.notified_at,
           s.acknowledged_at IS NOT NULL AS acknowledged,
           coalesce(s.silenced_until > %(now)s, false) AS silenced,
           CASE WHEN r.kind = 'threshold' THEN r.for_s ELSE 0 END AS hold_s,
           r.renotify_s, r.enabled AND r.deleted_at IS NULL AS live
    FROM keys k
    LEFT JOIN alert_observed o USING (rule_id, device_key)
    LEFT JOIN alert_states s USING (rule_id, device_key)
    JOIN alert_rules r USING (rule_id)
), decided AS (
    SELECT seen.*,
           CASE
               WHEN cur = 'firing' THEN
                   CASE WHEN NOT in_scope OR (known AND NOT holds) THEN 'resolved'
                        ELSE 'firing' END
               WHEN cur = 'pending' THEN
                   CASE WHEN NOT in_scope OR NOT breach THEN 'ok'
                        WHEN %(now)s - pending_since >= make_interval(secs => hold_s)
                        THEN 'firing'
                        ELSE 'pending' END
               WHEN in_scope AND breach THEN
                   CASE WHEN hold_s = 0 THEN 'firing' ELSE 'pending' END
               ELSE cur
           END AS new_state
    FROM seen
), flagged AS (
    SELECT decided.*,
           CASE
               WHEN new_state = 'firing' AND cur <> 'firing' THEN
                   CASE WHEN silenced THEN NULL ELSE 'firing' END
               WHEN new_state = 'firing' AND NOT silenced AND NOT acknowledged
                    AND (notified_at IS NULL
                         OR (renotify_s > 0
                             AND notified_at <= %(now)s - make_interval(secs => renotify_s)))
               THEN 'firing'
               WHEN new_state = 'resolved' AND cur = 'firing' AND notified_at IS NOT NULL
               THEN 'resolved'
           END AS notify
    FROM decided
)
SELECT rule_id, device_key, device_id, cur, new_state,
       CASE WHEN new_state = cur THEN since ELSE %(now)s END,
       CASE WHEN new_state = 'pending' AND cur <> 'pending' THEN %(now)s
            WHEN new_state = 'firing' AND cur NOT IN ('pending', 'firing') THEN %(now)s
            ELSE pending_since END,
       CASE WHEN new_state = 'firing' AND cur <> 'firing' THEN %(now)s
            WHEN new_state = 'pending' THEN NULL
            ELSE firing_since END,
       CASE WHEN new_state = 'resolved' AND cur <> 'resolved' THEN %(now)s
            WHEN new_state IN ('pending', 'firing') THEN NULL
            ELSE resolved_at END,
       CASE WHEN new_state = cur THEN value ELSE current END,
       current,
       CASE WHEN notify = 'firing' THEN %(now)s
            WHEN new_state = 'firing' AND cur <> 'firing' THEN NULL
            WHEN new_state = 'pending' THEN NULL
            ELSE notified_at END,
       notify,
       coalesce(notify = 'firing' AND cur = 'firing' AND notified_at IS NOT NULL, false),
       CASE WHEN in_scope OR new_state NOT IN ('resolved', 'ok') THEN ''
            WHEN NOT live THEN 'the rule was disabled or deleted'
            ELSE 'the device left the rule''s scope' END
FROM flagged
WHERE new_state <> cur OR notify IS NOT NULL
"""

# An acknowledgement lasts until the alert next starts firing.
APPLY_STATES: Final = """
INSERT INTO alert_states AS s (rule_id, device_key, device_id, state, since, pending_since,
                               firing_since, resolved_at, value, rule_version, notified_at)
SELECT c.rule_id, c.device_key, c.device_id, c.new_state, c.since, c.pending_since,
       c.firing_since, c.resolved_at, c.value, r.version, c.notified_at
FROM alert_changes c JOIN alert_rules r USING (rule_id)
ON CONFLICT (rule_id, device_key) DO UPDATE
SET device_id = excluded.device_id, state = excluded.state, since = excluded.since,
    pending_since = excluded.pending_since, firing_since = excluded.firing_since,
    resolved_at = excluded.resolved_at, value = excluded.value,
    rule_version = excluded.rule_version, notified_at = excluded.notified_at,
    acknowledged_at = CASE WHEN excluded.state = 'firing' AND s.state <> 'firing' THEN NULL
                           ELSE s.acknowledged_at END
"""

INSERT_EVENTS: Final = """
INSERT INTO alert_events (at, event, from_state, rule_id, rule_version, rule_name, severity,
                          device_key, device_id, value, detail)
SELECT %(now)s, c.new_state, c.old_state, c.rule_id, r.version, r.name, r.severity,
       c.device_key, c.device_id, c.value, c.detail
FROM alert_changes c JOIN alert_rules r USING (rule_id)
WHERE c.new_state <> c.old_state
ORDER BY c.rule_id, c.device_key
"""

# The document every format is rendered from (ingest.alerts.render); ordered so that the
# outbox's ids, which set the order of delivery per webhook, follow rule and device.
INSERT_NOTIFICATIONS: Final = """
INSERT INTO alert_notifications (webhook_id, created_at, next_attempt_at, alert)
SELECT w.webhook_id, %(now)s, %(now)s, jsonb_build_object(
    'status', c.notify,
    'repeat', c.repeat,
    'at', %(now)s,
    'rule', jsonb_build_object(
        'rule_id', r.rule_id, 'version', r.version, 'name', r.name, 'kind', r.kind,
        'severity', r.severity, 'labels', r.labels, 'description', r.description),
    'device_id', c.device_id,
    'value', c.current,
    'pending_since', c.pending_since,
    'firing_since', c.firing_since,
    'resolved_at', c.resolved_at,
    'detail', c.detail,
    'links', jsonb_build_object(
        'alert', %(api_url)s::text || '/v1/alerts?rule_id=' || r.rule_id
                 || '&device_id=' || c.device_id,
        'history', %(api_url)s::text || '/v1/alerts/history?rule_id=' || r.rule_id
                   || '&device_id=' || c.device_id,
        'rule', %(api_url)s::text || '/v1/alert-rules/' || r.rule_id,
        'device', %(api_url)s::text || '/v1/devices/' || c.device_id))
FROM alert_changes c
JOIN alert_rules r USING (rule_id)
CROSS JOIN alert_webhooks w
WHERE c.notify IS NOT NULL AND w.enabled
ORDER BY w.webhook_id, c.rule_id, c.device_key
"""

RECORD_EVALUATOR: Final = """
INSERT INTO alert_evaluator (id, holder, evaluated_at, duration_s)
VALUES (true, %(holder)s, %(now)s, %(duration_s)s)
ON CONFLICT (id) DO UPDATE
SET holder = excluded.holder, evaluated_at = excluded.evaluated_at,
    duration_s = excluded.duration_s, runs = alert_evaluator.runs + 1
"""
