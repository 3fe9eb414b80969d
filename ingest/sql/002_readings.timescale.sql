-- Readings on TimescaleDB: a hypertable; chunk interval, compression and retention
-- policies are applied from the settings after every migration run.

CREATE TABLE readings (
    time        timestamptz NOT NULL,
    device_key  integer NOT NULL,
    metric_key  smallint NOT NULL,
    value       float8 NOT NULL,
    CONSTRAINT readings_key UNIQUE (device_key, metric_key, time)
);

-- No default time index: chunk exclusion covers time ranges, and the unique key serves
-- every per-device query; a second B-tree would tax each insert.
SELECT create_hypertable('readings', by_range('time', INTERVAL '1 day'),
                         create_default_indexes => false);

ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_key',
    timescaledb.compress_orderby = 'metric_key, time DESC'
);
