-- Tandem metadata schema, version 1 (PostgreSQL).
CREATE TABLE region_state (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    region TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    journal_head BIGINT NOT NULL,
    hlc BIGINT NOT NULL
);
CREATE TABLE journal (
    seq BIGINT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    hlc BIGINT NOT NULL,
    origin_region TEXT NOT NULL,
    origin_seq BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    format BIGINT NOT NULL,
    kind TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX journal_by_workspace ON journal (workspace_id, seq);
CREATE UNIQUE INDEX journal_by_origin ON journal (origin_region, origin_seq);
CREATE TABLE workspaces (
    workspace_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    creation_time BIGINT NOT NULL,
    last_update_time BIGINT NOT NULL,
    lifecycle_stage TEXT NOT NULL,
    deletion_time BIGINT,
    next_experiment_id BIGINT NOT NULL
);
CREATE TABLE experiments (
    workspace_id TEXT NOT NULL,
    experiment_id TEXT NOT NULL,
    name TEXT NOT NULL,
    artifact_location TEXT NOT NULL,
    lifecycle_stage TEXT NOT NULL,
    creation_time BIGINT NOT NULL,
    last_update_time BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, experiment_id),
    UNIQUE (workspace_id, name)
);
CREATE TABLE experiment_tags (
    workspace_id TEXT NOT NULL,
    experiment_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (workspace_id, experiment_id, key)
);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    experiment_id TEXT NOT NULL,
    run_name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL,
    start_time BIGINT,
    end_time BIGINT,
    artifact_uri TEXT NOT NULL,
    lifecycle_stage TEXT NOT NULL,
    deleted_time BIGINT
);
CREATE INDEX runs_by_experiment ON runs (workspace_id, experiment_id);
CREATE TABLE run_params (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE run_tags (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE metrics (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    timestamp BIGINT NOT NULL,
    step BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    is_nan BIGINT NOT NULL,
    model_id TEXT NOT NULL DEFAULT '',
    dataset_name TEXT NOT NULL DEFAULT '',
    dataset_digest TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, key, timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest)
);
CREATE INDEX metrics_by_model ON metrics (model_id) WHERE model_id <> '';
CREATE TABLE latest_metrics (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    timestamp BIGINT NOT NULL,
    step BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    is_nan BIGINT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE run_dataset_inputs (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    position BIGINT NOT NULL,
    input TEXT NOT NULL,
    PRIMARY KEY (run_id, name, digest)
);
CREATE TABLE run_model_inputs (
    run_id TEXT NOT NULL,
    model_id TEXT NOT NULL,
    PRIMARY KEY (run_id, model_id)
);
CREATE TABLE run_model_outputs (
    run_id TEXT NOT NULL,
    model_id TEXT NOT NULL,
    step BIGINT NOT NULL,
    PRIMARY KEY (run_id, model_id)
);
CREATE TABLE logged_models (
    model_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    experiment_id TEXT NOT NULL,
    name TEXT NOT NULL,
    artifact_uri TEXT NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    creator_id TEXT NOT NULL,
    model_type TEXT,
    source_run_id TEXT,
    creation_time BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    lifecycle_stage TEXT NOT NULL
);
CREATE INDEX logged_models_by_experiment ON logged_models (workspace_id, experiment_id);
CREATE TABLE logged_model_tags (
    model_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);
CREATE TABLE logged_model_params (
    model_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);
CREATE TABLE registered_models (
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    user_id TEXT NOT NULL,
    creation_time BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    next_version BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, name)
);
CREATE TABLE registered_model_tags (
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (workspace_id, name, key)
);
CREATE TABLE registered_model_aliases (
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, name, alias)
);
CREATE TABLE model_versions (
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    creation_time BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    current_stage TEXT NOT NULL,
    description TEXT NOT NULL,
    source TEXT NOT NULL,
    storage_location TEXT NOT NULL,
    run_id TEXT NOT NULL,
    run_link TEXT NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT NOT NULL,
    model_id TEXT NOT NULL,
    PRIMARY KEY (workspace_id, name, version)
);
CREATE TABLE model_version_tags (
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (workspace_id, name, version, key)
);
CREATE TABLE artifacts (
    workspace_id TEXT NOT NULL,
    path TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, path)
);
