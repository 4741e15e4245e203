-- Replication, version 2: how far this region has applied each source's journal.
CREATE TABLE replication_positions (
    source_region TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- The asset class of each record ('' for workspace lifecycle), so the lag of
-- each class can be measured without decoding payloads.
ALTER TABLE journal ADD COLUMN asset_class TEXT NOT NULL DEFAULT '';
CREATE INDEX journal_by_class ON journal (asset_class, seq);
