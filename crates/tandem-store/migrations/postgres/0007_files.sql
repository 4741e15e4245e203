-- The workspace file share, version 7: one row per file, its bytes in the
-- region's storage at `workspaces/<workspace_id>/files/<path>`. Purging a
-- workspace deletes these rows but never the bytes (they can be salvaged).
CREATE TABLE files (
    workspace_id TEXT NOT NULL,
    path TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    modified_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, path)
);
