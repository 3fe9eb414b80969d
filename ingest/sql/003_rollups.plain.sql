-- 1-minute and 1-hour rollups on plain PostgreSQL, kept current by a scheduled refresh.
-- The writer logs the minutes each batch touches in rollup_dirty; the refresh re-aggregates
-- exactly those minutes (so late rows are folded in) up to a watermark, then the hours
-- that contain them from the 1-minute rollup.

CREATE TABLE readings_1m (
    bucket      timestamptz NOT NULL,
    device_key  integer NOT NULL,
    metric_key  smallint NOT NULL,
    count       bigint NOT NULL,
    sum         float8 NOT NULL,
    min         float8 NOT NULL,
    max         float8 NOT NULL,
    first       float8 NOT NULL,
    last        float8 NOT NULL,
    PRIMARY KEY (device_key, metric_key, bucket)
);

CREATE TABLE readings_1h (LIKE readings_1m INCLUDING ALL);

CREATE TABLE rollup_dirty (
    minute  timestamptz NOT NULL
);
CREATE INDEX rollup_dirty_minute ON rollup_dirty (minute);

-- Buckets before the watermark are complete in the rollups (but for rows committed after
-- the last refresh, which the next one folds in).
CREATE TABLE rollup_state (
    name       text PRIMARY KEY,
    watermark  timestamptz NOT NULL
);
INSERT INTO rollup_state VALUES ('rollups', '-infinity');

-- Readings stored before this version are rolled up by the first refresh.
INSERT INTO rollup_dirty SELECT DISTINCT date_trunc('minute', time) FROM readings;
