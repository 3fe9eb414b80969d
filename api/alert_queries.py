"""SQL of the alert routes, as named constants; every value is a bound parameter.

The evaluator (ingest/alerts) owns the states' transitions; the API writes rules, webhooks,
acknowledgements and silences, and reads the rest.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACKNOWLEDGE",
    "ALERTS",
    "ALERT_BY_KEY",
    "DELETE_RULE",
    "DELETE_WEBHOOK",
    "DELIVERIES",
    "EVALUATED_AT",
    "GET_RULE",
    "GET_WEBHOOK",
    "HISTORY",
    "INSERT_EVENT",
    "INSERT_RULE",
    "INSERT_WEBHOOK",
    "LIST_RULES",
    "LIST_WEBHOOKS",
    "REPLACE_SIGNING_KEY",
    "RULE_COLUMNS",
    "RULE_INPUT_COLUMNS",
    "SILENCE",
    "UPDATE_RULE",
    "UPDATE_WEBHOOK",
]

#: The columns of a rule, in the order the rule queries return them.
RULE_COLUMNS: Final = (
    "rule_id", "version", "name", "description", "kind", "severity", "labels", "device_id",
    "selector", "metric", "agg", "window_s", "op", "threshold", "clear_threshold", "low", "high",
    "clear_low", "clear_high", "for_s", "factor", "interval_s", "renotify_s", "enabled",
    "created_at", "updated_at",
)  # fmt: skip
_RULE = ", ".join(RULE_COLUMNS)
#: The columns a client sets, as parameters of the same names.
RULE_INPUT_COLUMNS: Final = RULE_COLUMNS[2:24]
_SET = RULE_INPUT_COLUMNS

INSERT_RULE: Final = f"""
INSERT INTO alert_rules ({", ".join(_SET)})
VALUES ({", ".join(f"%({c})s" for c in _SET)})
RETURNING {_RULE}
"""  # noqa: S608  (constant column names only)

UPDATE_RULE: Final = f"""
UPDATE alert_rules
SET {", ".join(f"{c} = %({c})s" for c in _SET)}, version = version + 1, updated_at = now()
WHERE rule_id = %(rule_id)s AND deleted_at IS NULL
RETURNING {_RULE}
"""  # noqa: S608  (constant column names only)

GET_RULE: Final = f"""
SELECT {_RULE} FROM alert_rules WHERE rule_id = %s AND deleted_at IS NULL
"""  # noqa: S608  (constant column names only)

LIST_RULES: Final = f"""
SELECT {_RULE} FROM alert_rules
WHERE deleted_at IS NULL AND rule_id > %(after)s
  AND (%(kind)s::text IS NULL OR kind = %(kind)s)
  AND (%(severity)s::text IS NULL OR severity = %(severity)s)
ORDER BY rule_id
LIMIT %(limit)s
"""  # noqa: S608  (constant column names only)

# Kept as a row, disabled: its history still names it, and the evaluator resolves its
# firing alerts.
DELETE_RULE: Final = """
UPDATE alert_rules SET deleted_at = now(), enabled = false, updated_at = now()
WHERE rule_id = %s AND deleted_at IS NULL
"""

_WEBHOOK = """
w.webhook_id, w.name, w.url, w.format, w.enabled, w.created_at, w.updated_at,
(SELECT count(*) FROM alert_notifications n
 WHERE n.webhook_id = w.webhook_id AND n.state = 'pending'),
(SELECT count(*) FROM alert_notifications n
 WHERE n.webhook_id = w.webhook_id AND n.state = 'dead')
"""
INSERT_WEBHOOK: Final = """
INSERT INTO alert_webhooks (name, url, format, enabled, secret)
VALUES (%(name)s, %(url)s, %(format)s, %(enabled)s, %(secret)s)
RETURNING webhook_id
"""
GET_WEBHOOK: Final = f"SELECT {_WEBHOOK} FROM alert_webhooks w WHERE w.webhook_id = %s"  # noqa: S608  (constant)
LIST_WEBHOOKS: Final = f"SELECT {_WEBHOOK} FROM alert_webhooks w ORDER BY w.webhook_id"  # noqa: S608  (constant)
UPDATE_WEBHOOK: Final = """
UPDATE alert_webhooks
SET name = %(name)s, url = %(url)s, format = %(format)s, enabled = %(enabled)s,
    updated_at = now()
WHERE webhook_id = %(webhook_id)s
"""
REPLACE_SIGNING_KEY: Final = """
UPDATE alert_webhooks SET secret = %s, updated_at = now() WHERE webhook_id = %s
"""
DELETE_WEBHOOK: Final = "DELETE FROM alert_webhooks WHERE webhook_id = %s"

DELIVERIES: Final = """
SELECT notification_id, idempotency_key::text, created_at, alert->>'status',
       (alert->>'repeat')::boolean, (alert->'rule'->>'rule_id')::bigint, alert->>'device_id',
       state, attempts, next_attempt_at, last_attempt_at, last_status, last_error, done_at
FROM alert_notifications
WHERE webhook_id = %(webhook_id)s AND notification_id < %(before)s
  AND (%(state)s::text IS NULL OR state = %(state)s)
ORDER BY notification_id DESC
LIMIT %(limit)s
"""

_ALERT = """
s.rule_id, r.name, r.kind, r.severity, r.labels, s.device_id, s.state, s.since,
s.pending_since, s.firing_since, s.resolved_at, s.value, s.notified_at, s.acknowledged_at,
s.silenced_until
"""
# Newest first: (since, rule, device) descending, a page after the cursor's position.
ALERTS: Final = f"""
SELECT {_ALERT}, s.device_key
FROM alert_states s JOIN alert_rules r USING (rule_id)
WHERE s.state = %(state)s
  AND (%(severity)s::text IS NULL OR r.severity = %(severity)s)
  AND (%(device_id)s::text IS NULL OR s.device_id = %(device_id)s)
  AND (%(rule_id)s::bigint IS NULL OR s.rule_id = %(rule_id)s)
  AND (%(after_since)s::timestamptz IS NULL
       OR (s.since, s.rule_id, s.device_key)
          < (%(after_since)s, %(after_rule)s, %(after_device)s))
ORDER BY s.since DESC, s.rule_id DESC, s.device_key DESC
LIMIT %(limit)s
"""  # noqa: S608  (constant fragments only)
ALERT_BY_KEY: Final = f"""
SELECT {_ALERT}
FROM alert_states s JOIN alert_rules r USING (rule_id)
WHERE s.rule_id = %s AND s.device_key = %s
"""  # noqa: S608  (constant fragments only)
EVALUATED_AT: Final = "SELECT evaluated_at FROM alert_evaluator"

# Only a firing alert can be acknowledged, once a firing; when nothing is returned, the
# route looks at the alert to say why.
ACKNOWLEDGE: Final = """
UPDATE alert_states SET acknowledged_at = now()
WHERE rule_id = %s AND device_key = %s AND state = 'firing' AND acknowledged_at IS NULL
RETURNING state
"""
# Silencing an alert that has never left ok makes its row, so that it is silenced from its
# first breach on.
SILENCE: Final = """
INSERT INTO alert_states (rule_id, device_key, device_id, state, since, rule_version,
                          silenced_until)
SELECT r.rule_id, d.device_key, d.device_id, 'ok', now(), r.version, %(until)s
FROM alert_rules r, devices d
WHERE r.rule_id = %(rule_id)s AND d.device_key = %(device_key)s
ON CONFLICT (rule_id, device_key) DO UPDATE SET silenced_until = excluded.silenced_until
RETURNING state
"""
INSERT_EVENT: Final = """
INSERT INTO alert_events (at, event, from_state, rule_id, rule_version, rule_name, severity,
                          device_key, device_id, value, detail)
SELECT now(), %(event)s, s.state, r.rule_id, r.version, r.name, r.severity, s.device_key,
       s.device_id, NULL, %(detail)s
FROM alert_states s JOIN alert_rules r USING (rule_id)
WHERE s.rule_id = %(rule_id)s AND s.device_key = %(device_key)s
"""

HISTORY: Final = """
SELECT event_id, at, event, from_state, rule_id, rule_version, rule_name, severity, device_id,
       value, detail
FROM alert_events
WHERE event_id < %(before)s
  AND (%(rule_id)s::bigint IS NULL OR rule_id = %(rule_id)s)
  AND (%(device_id)s::text IS NULL OR device_id = %(device_id)s)
  AND (%(severity)s::text IS NULL OR severity = %(severity)s)
  AND (%(event)s::text IS NULL OR event = %(event)s)
  AND (%(start)s::timestamptz IS NULL OR at >= %(start)s)
  AND (%(end)s::timestamptz IS NULL OR at < %(end)s)
ORDER BY event_id DESC
LIMIT %(limit)s
"""
