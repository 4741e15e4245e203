-- Metric points ordered by step, version 8: the primary key of `metrics`
-- puts `step` before `timestamp`, so a metric's history, read ORDER BY
-- step, timestamp, value page by page, is a range scan of the key's index
-- instead of a sort of all the key's points for every page. Same set of key
-- columns, so the same rows are unique.
ALTER TABLE metrics DROP CONSTRAINT metrics_pkey;
ALTER TABLE metrics ADD CONSTRAINT metrics_pkey PRIMARY KEY (run_id, key, step, timestamp, value, is_nan, model_id, dataset_name, dataset_digest);
