-- Readings on plain PostgreSQL: native range partitions by time (one a day), created ahead
-- and on demand by the writer, dropped for retention by a scheduled job.

CREATE TABLE readings (
    time        timestamptz NOT NULL,
    device_key  integer NOT NULL,
    metric_key  smallint NOT NULL,
    value       float8 NOT NULL,
    CONSTRAINT readings_key UNIQUE (device_key, metric_key, time)
) PARTITION BY RANGE (time);

-- Rollup refreshes and fleet-wide counts scan by time alone; a BRIN index costs almost
-- nothing on insert because rows arrive roughly in time order.
CREATE INDEX readings_time_brin ON readings USING brin (time);
