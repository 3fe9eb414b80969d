-- Rollups keep what counters need (first and last they had): the sum of what the counter
-- lost at resets inside each bucket, so increase = last - first + resets (see 010).
-- Buckets rolled up before this version get it from the finer tier below them; buckets
-- whose raw readings (finer rows) retention has removed already keep 0.

ALTER TABLE readings_1m ADD COLUMN resets float8 NOT NULL DEFAULT 0;
ALTER TABLE readings_1h ADD COLUMN resets float8 NOT NULL DEFAULT 0;
ALTER TABLE readings_1d ADD COLUMN resets float8 NOT NULL DEFAULT 0;

UPDATE readings_1m m SET resets = x.resets
FROM (SELECT date_trunc('minute', time) AS bucket, device_key, metric_key,
             counter_resets(value, value, 0 ORDER BY time) AS resets
      FROM readings GROUP BY 1, 2, 3) x
WHERE (m.device_key, m.metric_key, m.bucket) = (x.device_key, x.metric_key, x.bucket)
  AND x.resets <> 0;

UPDATE readings_1h h SET resets = x.resets
FROM (SELECT date_trunc('hour', bucket) AS bucket, device_key, metric_key,
             counter_resets(first, last, resets ORDER BY bucket) AS resets
      FROM readings_1m GROUP BY 1, 2, 3) x
WHERE (h.device_key, h.metric_key, h.bucket) = (x.device_key, x.metric_key, x.bucket)
  AND x.resets <> 0;

UPDATE readings_1d d SET resets = x.resets
FROM (SELECT date_trunc('day', bucket, 'UTC') AS bucket, device_key, metric_key,
             counter_resets(first, last, resets ORDER BY bucket) AS resets
      FROM readings_1h GROUP BY 1, 2, 3) x
WHERE (d.device_key, d.metric_key, d.bucket) = (x.device_key, x.metric_key, x.bucket)
  AND x.resets <> 0;
