-- Alerts, the same on both paths: rules over the stored data, the state of each (rule,
-- device), the history of their transitions, webhooks, and the outbox of notifications that
-- the evaluator writes in the transaction that changes a state (ingest/alerts).

-- A rule is one of three kinds; the columns of the other kinds stay NULL. Deleting a rule
-- sets deleted_at (its history keeps naming it); its firing alerts are resolved by the next
-- evaluation. version counts the changes made through the API.
CREATE TABLE alert_rules (
    rule_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version          integer NOT NULL DEFAULT 1,
    name             text NOT NULL,
    description      text NOT NULL DEFAULT '',
    kind             text NOT NULL CHECK (kind IN ('threshold', 'no_data', 'offline')),
    severity         text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    labels           jsonb NOT NULL DEFAULT '{}',
    -- Scope: one device, the devices whose metadata contains the selector, or (neither)
    -- the whole fleet.
    device_id        text,
    selector         jsonb,
    metric           text,
    agg              text CHECK (agg IN ('avg', 'min', 'max', 'last', 'count')),
    window_s         integer CHECK (window_s > 0),
    op               text CHECK (op IN ('>', '>=', '<', '<=', 'outside')),
    threshold        float8,
    clear_threshold  float8,
    low              float8,
    high             float8,
    clear_low        float8,
    clear_high       float8,
    for_s            integer NOT NULL DEFAULT 0 CHECK (for_s >= 0),
    factor           float8 CHECK (factor > 0),
    interval_s       integer CHECK (interval_s > 0),
    renotify_s       integer NOT NULL DEFAULT 3600 CHECK (renotify_s >= 0),
    enabled          boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    CHECK (device_id IS NULL OR selector IS NULL),
    CHECK (kind <> 'threshold' OR (metric IS NOT NULL AND agg IS NOT NULL
                                   AND window_s IS NOT NULL AND op IS NOT NULL)),
    CHECK (kind <> 'threshold' OR op = 'outside'
           OR (threshold IS NOT NULL AND clear_threshold IS NOT NULL)),
    CHECK (kind <> 'threshold' OR op <> 'outside'
           OR (low IS NOT NULL AND high IS NOT NULL
               AND clear_low IS NOT NULL AND clear_high IS NOT NULL)),
    CHECK (kind <> 'offline' OR factor IS NOT NULL)
);

-- One row per (rule, device) that has left ok at least once. The device is kept by key and
-- by id (no foreign key): a deleted device's firing alert is still resolved, by its id.
CREATE TABLE alert_states (
    rule_id          bigint NOT NULL REFERENCES alert_rules,
    device_key       integer NOT NULL,
    device_id        text NOT NULL,
    state            text NOT NULL CHECK (state IN ('ok', 'pending', 'firing', 'resolved')),
    since            timestamptz NOT NULL,
    pending_since    timestamptz,
    firing_since     timestamptz,
    resolved_at      timestamptz,
    value            float8,
    rule_version     integer NOT NULL,
    -- The last notification of the current firing; NULL until one was written.
    notified_at      timestamptz,
    acknowledged_at  timestamptz,
    silenced_until   timestamptz,
    PRIMARY KEY (rule_id, device_key)
);
-- Each evaluation reads the active alerts; GET /v1/alerts the firing ones.
CREATE INDEX alert_states_active ON alert_states (state, rule_id, device_key)
    WHERE state IN ('pending', 'firing');

-- The history: every transition, acknowledgement and silence, with what the rule was then.
CREATE TABLE alert_events (
    event_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL,
    event         text NOT NULL
                  CHECK (event IN ('pending', 'firing', 'resolved', 'ok', 'acknowledged',
                                   'silenced')),
    from_state    text,
    rule_id       bigint NOT NULL REFERENCES alert_rules,
    rule_version  integer NOT NULL,
    rule_name     text NOT NULL,
    severity      text NOT NULL,
    device_key    integer NOT NULL,
    device_id     text NOT NULL,
    value         float8,
    detail        text NOT NULL DEFAULT ''
);
CREATE INDEX alert_events_device ON alert_events (device_id, at);
CREATE INDEX alert_events_rule ON alert_events (rule_id, event_id);
CREATE INDEX alert_events_at ON alert_events (at);

-- The secret signs every delivery (HMAC-SHA256), so it is kept as it is; the API shows it
-- once, when it is made.
CREATE TABLE alert_webhooks (
    webhook_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL DEFAULT '',
    url         text NOT NULL,
    format      text NOT NULL DEFAULT 'json' CHECK (format IN ('json', 'alertmanager')),
    secret      text NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Grafana's read-only role (deploy/postgres) reads every table through default privileges;
-- the webhooks' secrets are none of its business, and no panel reads them.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'grafana') THEN
        REVOKE ALL ON alert_webhooks FROM grafana;
    END IF;
END $$;

-- The outbox: one row per notification and webhook, delivered in id order per webhook.
-- alert is the format-neutral document each delivery's body is rendered from.
CREATE TABLE alert_notifications (
    notification_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id       bigint NOT NULL REFERENCES alert_webhooks ON DELETE CASCADE,
    idempotency_key  uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    created_at       timestamptz NOT NULL,
    alert            jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    last_attempt_at  timestamptz,
    last_status      integer,
    last_error       text,
    done_at          timestamptz
);
CREATE INDEX alert_notifications_queue ON alert_notifications (webhook_id, notification_id)
    WHERE state = 'pending';
CREATE INDEX alert_notifications_webhook ON alert_notifications (webhook_id, notification_id);
CREATE INDEX alert_notifications_done ON alert_notifications (done_at) WHERE done_at IS NOT NULL;

-- Which evaluator ran last and when: one row, written by every evaluation.
CREATE TABLE alert_evaluator (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    holder       text NOT NULL,
    evaluated_at timestamptz NOT NULL,
    duration_s   float8 NOT NULL,
    runs         bigint NOT NULL DEFAULT 1
);

-- Rules scoped by a metadata selector find their devices by containment.
CREATE INDEX devices_metadata_path ON devices USING gin (metadata jsonb_path_ops);
