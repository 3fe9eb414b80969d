-- Booleans and strings beside numbers, one type per metric, and units per device and metric.
--
-- Numbers stay in readings; booleans and strings go to readings_typed, a hypertable with the
-- same identity (device, metric, time), compression and retention (the policies are applied
-- from the settings after every migration run). A metric's type is fixed by its first
-- reading; every metric stored before this version holds numbers.

ALTER TABLE metrics
    ADD COLUMN value_type text NOT NULL DEFAULT 'number'
        CHECK (value_type IN ('number', 'boolean', 'string'));

CREATE TABLE readings_typed (
    time        timestamptz NOT NULL,
    device_key  integer NOT NULL,
    metric_key  smallint NOT NULL,
    value_bool  boolean,
    value_text  text,
    CONSTRAINT readings_typed_key UNIQUE (device_key, metric_key, time),
    CONSTRAINT readings_typed_one_value CHECK (num_nonnulls(value_bool, value_text) = 1)
);

SELECT create_hypertable('readings_typed', by_range('time', INTERVAL '1 day'),
                         create_default_indexes => false);

ALTER TABLE readings_typed SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_key',
    timescaledb.compress_orderby = 'metric_key, time DESC'
);

-- Set by a device's first reading of the metric that carries a unit; never changed after.
CREATE TABLE metric_units (
    device_key  integer NOT NULL REFERENCES devices ON DELETE CASCADE,
    metric_key  smallint NOT NULL REFERENCES metrics,
    unit        text NOT NULL CHECK (unit ~ '^[^\x01-\x1f\x7f]{1,32}$'),
    PRIMARY KEY (device_key, metric_key)
);

-- The latest value keeps its type: exactly one of the three columns holds it.
ALTER TABLE latest_readings
    ALTER COLUMN value DROP NOT NULL,
    ADD COLUMN value_bool boolean,
    ADD COLUMN value_text text,
    ADD CONSTRAINT latest_readings_one_value CHECK (num_nonnulls(value, value_bool, value_text) = 1);
