-- The newest reading of each device and metric, kept by the ingest writer (it upserts the
-- newest committed values about once a second), so that "latest values" is one primary-key
-- read per device instead of an index probe into every partition (chunk) of readings.
--
-- Retention does not touch it: a row older than the retention horizon is still the latest
-- value known for that device and metric. Deleting a device deletes its rows.

CREATE TABLE latest_readings (
    device_key  integer NOT NULL,
    metric_key  smallint NOT NULL,
    time        timestamptz NOT NULL,
    value       float8 NOT NULL,
    PRIMARY KEY (device_key, metric_key)
-- Nearly every flush updates most rows; free room on each page lets those updates stay
-- heap-only (no index entry to add), and the table is small (devices x metrics).
) WITH (fillfactor = 50);

-- Readings stored before this version: the newest row per key. Ordering every column
-- descending lets the planner read the unique key (device, metric, time) backwards
-- instead of sorting.
INSERT INTO latest_readings (device_key, metric_key, time, value)
SELECT DISTINCT ON (device_key, metric_key) device_key, metric_key, time, value
FROM readings
ORDER BY device_key DESC, metric_key DESC, time DESC;
