"""SQL of the outbox: claim the due head of each webhook's queue, record how it went.

A webhook's notifications go out one at a time in id order, so a receiver sees them in the
order they were decided; a claim moves the head's next attempt past the time its delivery
can take, so that an evaluator that dies mid-delivery leaves it to be sent again (with the
same idempotency key) once the claim has run out.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CLAIM_HEADS", "NEXT_DUE", "RECORD_DELIVERED", "RECORD_FAILED", "RETENTION"]

_HEADS = """
SELECT DISTINCT ON (n.webhook_id) n.notification_id, n.next_attempt_at
FROM alert_notifications n JOIN alert_webhooks w USING (webhook_id)
WHERE n.state = 'pending' AND w.enabled
ORDER BY n.webhook_id, n.notification_id
"""

CLAIM_HEADS: Final = f"""
WITH heads AS ({_HEADS})
UPDATE alert_notifications n
SET attempts = n.attempts + 1, last_attempt_at = %(now)s, next_attempt_at = %(claim_until)s
FROM heads h, alert_webhooks w
WHERE n.notification_id = h.notification_id AND h.next_attempt_at <= %(now)s
  AND w.webhook_id = n.webhook_id
RETURNING n.notification_id, n.webhook_id, n.idempotency_key::text, n.alert, n.attempts,
          w.url, w.format, w.secret
"""  # noqa: S608  (constant fragments only)

NEXT_DUE: Final = f"SELECT min(next_attempt_at) FROM ({_HEADS}) h"  # noqa: S608  (constant)

RECORD_DELIVERED: Final = """
UPDATE alert_notifications
SET state = 'delivered', done_at = %(now)s, last_status = %(status)s, last_error = NULL
WHERE notification_id = %(id)s
"""

RECORD_FAILED: Final = """
UPDATE alert_notifications
SET state = CASE WHEN attempts >= %(max_attempts)s THEN 'dead' ELSE 'pending' END,
    done_at = CASE WHEN attempts >= %(max_attempts)s THEN %(now)s END,
    next_attempt_at = %(retry_at)s, last_status = %(status)s, last_error = %(error)s
WHERE notification_id = %(id)s
RETURNING state
"""

# History and finished notifications past the retention; states left by deleted devices
# and rules once they are over; deleted rules that nothing refers to any more.
RETENTION: Final = (
    "DELETE FROM alert_notifications WHERE done_at < %(cutoff)s",
    "DELETE FROM alert_events WHERE at < %(cutoff)s",
    """
DELETE FROM alert_states s
WHERE s.state IN ('ok', 'resolved')
  AND (NOT EXISTS (SELECT 1 FROM devices d WHERE d.device_key = s.device_key)
       OR EXISTS (SELECT 1 FROM alert_rules r
                  WHERE r.rule_id = s.rule_id AND r.deleted_at IS NOT NULL))
""",
    """
DELETE FROM alert_rules r
WHERE r.deleted_at < %(cutoff)s
  AND NOT EXISTS (SELECT 1 FROM alert_states s WHERE s.rule_id = r.rule_id)
  AND NOT EXISTS (SELECT 1 FROM alert_events e WHERE e.rule_id = r.rule_id)
""",
)
