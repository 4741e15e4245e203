-- Clustered tables, version 5: `metrics`, `latest_metrics` and `artifacts`
-- become WITHOUT ROWID tables. Each has a primary key that is (nearly) its
-- whole row, so as rowid tables every row was written twice: once into the
-- table's own B-tree and once into the automatic index of the primary key.
-- Clustered on the primary key, a row is one B-tree entry, which halves the
-- pages a batch of metrics (or an artifact upload) writes and fsyncs.
-- Same columns, keys and contents; only the storage changes.
CREATE TABLE metrics_clustered (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    step INTEGER NOT NULL,
    value REAL NOT NULL,
    is_nan INTEGER NOT NULL,
    model_id TEXT NOT NULL DEFAULT '',
    dataset_name TEXT NOT NULL DEFAULT '',
    dataset_digest TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, key, timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest)
) WITHOUT ROWID;
INSERT INTO metrics_clustered (run_id, key, timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest)
    SELECT run_id, key, timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest FROM metrics;
DROP TABLE metrics;
ALTER TABLE metrics_clustered RENAME TO metrics;
CREATE INDEX metrics_by_model ON metrics (model_id) WHERE model_id <> '';

CREATE TABLE latest_metrics_clustered (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    step INTEGER NOT NULL,
    value REAL NOT NULL,
    is_nan INTEGER NOT NULL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
INSERT INTO latest_metrics_clustered (run_id, key, timestamp, step, value, is_nan)
    SELECT run_id, key, timestamp, step, value, is_nan FROM latest_metrics;
DROP TABLE latest_metrics;
ALTER TABLE latest_metrics_clustered RENAME TO latest_metrics;

CREATE TABLE artifacts_clustered (
    workspace_id TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, path)
) WITHOUT ROWID;
INSERT INTO artifacts_clustered (workspace_id, path, size, sha256, created_at)
    SELECT workspace_id, path, size, sha256, created_at FROM artifacts;
DROP TABLE artifacts;
ALTER TABLE artifacts_clustered RENAME TO artifacts;
