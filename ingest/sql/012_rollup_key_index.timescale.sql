-- The alert evaluator reads the 1-minute rollup by (device, metric, bucket range) for every
-- window a threshold rule needs. The continuous aggregate's materialized hypertable is only
-- indexed by (device_key, bucket) and (metric_key, bucket), so each probe filtered out the
-- device's other metrics; this index makes it one range scan, as the plain path's key does.
CREATE INDEX readings_1m_device_metric_bucket ON readings_1m (device_key, metric_key, bucket);
