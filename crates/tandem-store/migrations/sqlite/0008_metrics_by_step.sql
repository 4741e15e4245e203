-- Metric points ordered by step, version 8: the primary key of `metrics`
-- (the table's only B-tree, WITHOUT ROWID) puts `step` before `timestamp`.
-- A metric's history is read ORDER BY step, timestamp, value, page by page;
-- keyed on timestamp first, every page sorted all of the key's points in a
-- temporary B-tree. Keyed on step first, a page is a range of the B-tree,
-- and a training loop's new steps append at the end of their key instead
-- of landing among old points when timestamps repeat or go back.
-- Same columns and the same set of key columns, so the same rows are
-- unique; only the order of the key changes.
CREATE TABLE metrics_by_step (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    step INTEGER NOT NULL,
    value REAL NOT NULL,
    is_nan INTEGER NOT NULL,
    model_id TEXT NOT NULL DEFAULT '',
    dataset_name TEXT NOT NULL DEFAULT '',
    dataset_digest TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, key, step, timestamp, value, is_nan, model_id, dataset_name, dataset_digest)
) WITHOUT ROWID;
INSERT INTO metrics_by_step (run_id, key, timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest)
    SELECT run_id, key, timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest FROM metrics;
DROP TABLE metrics;
ALTER TABLE metrics_by_step RENAME TO metrics;
CREATE INDEX metrics_by_model ON metrics (model_id) WHERE model_id <> '';
