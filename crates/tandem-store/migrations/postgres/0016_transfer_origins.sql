-- Where copied objects came from (journal format 8, `origin_recorded`): one
-- row per (source, kind, source id) of a workspace, naming the object's id
-- here and the digest of the source object as last copied whole (empty while
-- a copy is under way). `tandem import` and `sync` read them to skip what is
-- unchanged, to resume, and to tell their own copies from name clashes.
CREATE TABLE transfer_origins (
    workspace_id TEXT NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    source_id TEXT NOT NULL,
    target_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    time BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, source, kind, source_id)
);
CREATE INDEX transfer_origins_by_target ON transfer_origins (workspace_id, kind, target_id);
