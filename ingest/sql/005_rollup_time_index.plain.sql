-- Fleet-wide reads of the rollups (the Grafana fleet overview's readings per second) select
-- a time range across every device, and the rollups' primary keys start with the device:
-- without an index on the bucket such a read scans the whole rollup.
CREATE INDEX readings_1m_bucket ON readings_1m (bucket);
CREATE INDEX readings_1h_bucket ON readings_1h (bucket);
