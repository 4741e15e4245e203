-- Soft delete with retention, version 6: per-workspace retention and purge
-- protection, deletion times of every kind that can be recovered, and the
-- region's garbage-collection queue.
ALTER TABLE workspaces ADD COLUMN retention_days INTEGER NOT NULL DEFAULT 14;
ALTER TABLE workspaces ADD COLUMN purge_protection INTEGER NOT NULL DEFAULT 0;
ALTER TABLE experiments ADD COLUMN deletion_time INTEGER;
UPDATE experiments SET deletion_time = last_update_time WHERE lifecycle_stage = 'deleted';
ALTER TABLE logged_models ADD COLUMN deletion_time INTEGER;
UPDATE logged_models SET deletion_time = last_updated_time WHERE lifecycle_stage = 'deleted';
UPDATE runs SET deleted_time = COALESCE(end_time, start_time, 0) WHERE lifecycle_stage = 'deleted' AND deleted_time IS NULL;
-- Registered models and versions were hard-deleted before: none is deleted yet.
ALTER TABLE registered_models ADD COLUMN deletion_time INTEGER;
ALTER TABLE model_versions ADD COLUMN deletion_time INTEGER;
-- Storage prefixes of purged items still to remove from this region's
-- storage. Region-local bookkeeping (like replication_positions): not
-- journaled, not part of the state dump; every region collects its own.
CREATE TABLE gc_queue (
    prefix TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    enqueued_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
