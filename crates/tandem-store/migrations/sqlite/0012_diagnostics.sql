-- A scratch row `tandem doctor` writes through the region's diagnostics to
-- prove the metadata database takes a committed write (a no-op transaction
-- writes nothing to disk, so it would not find a full or read-only disk).
-- Region-local like replication_positions: not journaled, not state, not in
-- the dump. Numbered 12: versions 9 to 11 are left to parallel branches.
CREATE TABLE diagnostics_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    written_at BIGINT NOT NULL,
    writes BIGINT NOT NULL
);
