-- 1-minute and 1-hour continuous aggregates. Real-time aggregation (materialized_only =
-- false) serves the not yet materialized tail from raw rows; refresh policies (applied from
-- the settings) re-materialize a window wide enough to take in late data.

CREATE MATERIALIZED VIEW readings_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', time) AS bucket,
       device_key,
       metric_key,
       count(*)           AS count,
       sum(value)         AS sum,
       min(value)         AS min,
       max(value)         AS max,
       first(value, time) AS first,
       last(value, time)  AS last
FROM readings
GROUP BY 1, 2, 3
WITH NO DATA;

CREATE MATERIALIZED VIEW readings_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       device_key,
       metric_key,
       count(*)           AS count,
       sum(value)         AS sum,
       min(value)         AS min,
       max(value)         AS max,
       first(value, time) AS first,
       last(value, time)  AS last
FROM readings
GROUP BY 1, 2, 3
WITH NO DATA;
