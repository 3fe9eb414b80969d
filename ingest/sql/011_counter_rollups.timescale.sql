-- Rollups keep what counters need (first and last they had): the sum of what the counter
-- lost at resets inside each bucket, so increase = last - first + resets (see 010).
-- A continuous aggregate's query cannot be altered: they are made again and materialized
-- from raw readings by `migrate` right after (outside this transaction). Rollup rows older
-- than the oldest raw reading are lost with the old aggregates: upgrade before setting a
-- rollup's retention above the raw retention (docs/storage.md, Tiered retention).

DROP MATERIALIZED VIEW readings_1d;
DROP MATERIALIZED VIEW readings_1h;
DROP MATERIALIZED VIEW readings_1m;

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
       last(value, time)  AS last,
       counter_resets(value, value, 0 ORDER BY time) AS resets
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
       last(value, time)  AS last,
       counter_resets(value, value, 0 ORDER BY time) AS resets
FROM readings
GROUP BY 1, 2, 3
WITH NO DATA;

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
       last(value, time)  AS last,
       counter_resets(value, value, 0 ORDER BY time) AS resets
FROM readings
GROUP BY 1, 2, 3
WITH NO DATA;
