-- Device registry, metric dictionary, dead letters and API keys: the same on both paths.

CREATE TABLE devices (
    device_key          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id           text NOT NULL UNIQUE
                        CHECK (device_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
    name                text,
    metadata            jsonb NOT NULL DEFAULT '{}',
    -- SHA-256 of the device token; the token itself is shown once and never stored.
    token_hash          bytea UNIQUE,
    expected_interval_s integer CHECK (expected_interval_s > 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    last_seen           timestamptz,
    last_seq            bigint,
    seq_gaps            bigint NOT NULL DEFAULT 0
);

-- smallint keys keep the readings table narrow; 32,767 metric names is far beyond a fleet.
CREATE TABLE metrics (
    metric_key  smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z][A-Za-z0-9_.:-]{0,63}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    source      text NOT NULL CHECK (source IN ('mqtt', 'http')),
    device_id   text,
    item_index  integer,
    reason      text NOT NULL,
    detail      text NOT NULL DEFAULT '',
    payload     bytea NOT NULL
);
CREATE INDEX dead_letters_received_at ON dead_letters (received_at);
CREATE INDEX dead_letters_device ON dead_letters (device_id, received_at);

CREATE TABLE api_keys (
    key_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_hash     bytea NOT NULL UNIQUE,
    scope        text NOT NULL CHECK (scope IN ('read', 'admin')),
    name         text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

-- Settings that scheduled jobs read (retention, partitioning); written by `migrate`.
CREATE TABLE storage_settings (
    key    text PRIMARY KEY,
    value  text NOT NULL
);
