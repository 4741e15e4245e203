-- Multi-writer (hot-hot) merging, version 3.
-- The causal context of a multi-writer change (JSON: origin region -> the
-- highest origin_seq of it the writer had applied), or NULL.
ALTER TABLE journal ADD COLUMN seen TEXT;
-- For every origin region, the highest origin_seq of its changes applied
-- here: the context local multi-writer changes are written with.
CREATE TABLE origin_progress (
    origin_region TEXT PRIMARY KEY,
    origin_seq INTEGER NOT NULL
);
INSERT INTO origin_progress (origin_region, origin_seq)
    SELECT origin_region, MAX(origin_seq) FROM journal GROUP BY origin_region;
-- The version (JSON) of the last write merged into each register of a
-- multi-writer class: what a concurrent write is compared with.
CREATE TABLE merge_registers (
    workspace_id TEXT NOT NULL,
    register TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (workspace_id, register)
);
-- Conflicts between concurrent writes, with both sides, as merged here.
CREATE TABLE conflicts (
    conflict_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    register TEXT NOT NULL,
    resolution TEXT NOT NULL,
    winner TEXT NOT NULL,
    loser TEXT NOT NULL,
    detected_at INTEGER NOT NULL
);
CREATE INDEX conflicts_by_workspace ON conflicts (workspace_id, detected_at);
-- The journal head and clock follow every appended record within the same
-- statement (writers are serialized in-process and take the next sequence
-- number from memory), saving each write a round trip to the database.
CREATE TRIGGER journal_advances_head AFTER INSERT ON journal BEGIN
    UPDATE region_state SET journal_head = NEW.seq, hlc = CASE WHEN hlc > NEW.hlc THEN hlc ELSE NEW.hlc END WHERE id = 1;
END;
