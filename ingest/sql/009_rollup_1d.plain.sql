-- The 1-day rollup on plain PostgreSQL, refreshed with the others: the days containing the
-- refreshed hours are re-aggregated from the 1-hour rollup. A year as days is 365 rows.

CREATE TABLE readings_1d (LIKE readings_1h INCLUDING ALL);
CREATE INDEX readings_1d_bucket ON readings_1d (bucket);

-- Days rolled up before this version: from the hours already there.
INSERT INTO readings_1d (bucket, device_key, metric_key, count, sum, min, max, first, last)
SELECT date_trunc('day', bucket, 'UTC'), device_key, metric_key, sum(count), sum(sum), min(min),
       max(max), (array_agg(first ORDER BY bucket))[1], (array_agg(last ORDER BY bucket DESC))[1]
FROM readings_1h
GROUP BY 1, 2, 3;
