-- Tag filters (metadata @> '{"site": "s42", "kind": "pump"}') are planned from the
-- statistics of metadata. With the default target (100), ANALYZE samples 30,000 rows and
-- keeps the 100 most common values; a fleet's less common tag sets are then estimated
-- from what is left, differently from one ANALYZE to the next. At 100,000 devices the
-- estimate sometimes went past the point where the planner walks the devices in id order,
-- filtering every row, instead of reading the metadata index (a CI run of
-- tests/api/test_device_admin.py). A target of 1,000 keeps up to 1,000 values from a
-- sample of 300,000 rows: a fleet's tag sets, counted, not guessed.
ALTER TABLE devices ALTER COLUMN metadata SET STATISTICS 1000;
