-- An optional per-workspace storage quota, in bytes of artifacts and files
-- (NULL: none); set by the journaled `workspace_quota_set` change.
ALTER TABLE workspaces ADD COLUMN storage_quota INTEGER;
