-- On this path readings_1m is a table whose primary key is (device_key, metric_key, bucket)
-- already; the version is kept so that both paths share one numbering.
SELECT 1;
