-- The 1-day continuous aggregate, beside 1m and 1h and like them (real-time, a refresh
-- policy applied from the settings). Days stored before this version are materialized by
-- `migrate` right after (a refresh cannot run inside the migration's transaction).

CREATE MATERIALIZED VIEW readings_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', time) AS bucket,
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
