-- Failover, version 4: epochs, fencing and the divergence quarantine.
-- Every epoch this region knows of, from the journal's epoch_began records:
-- who became primary and the history (fork: JSON, origin region -> highest
-- origin_seq) the epoch continues.
CREATE TABLE epochs (
    epoch INTEGER PRIMARY KEY,
    primary_region TEXT NOT NULL,
    fork TEXT NOT NULL,
    began_at INTEGER NOT NULL
);
-- Set on a journal record that was fenced: a change of an older epoch
-- beyond the fork of the epoch that followed it. It stays in the journal
-- (positions stay gap-free, re-deliveries are recognised) but is not part
-- of the state. The value is the epoch that voided it.
ALTER TABLE journal ADD COLUMN voided INTEGER;
-- The quarantine: records voided here, with their content, until someone
-- re-applies one on purpose. Never applied automatically.
CREATE TABLE divergence (
    divergence_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    workspace_id TEXT NOT NULL,
    origin_region TEXT NOT NULL,
    origin_seq INTEGER NOT NULL,
    record_epoch INTEGER NOT NULL,
    voided_by_epoch INTEGER NOT NULL,
    kind TEXT NOT NULL,
    record TEXT NOT NULL,
    reason TEXT NOT NULL,
    found_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    artifact_state TEXT,
    applied_seq INTEGER,
    applied_at INTEGER
);
-- At a primary: quarantined records re-applied here, so that applying the
-- same one twice is recognised.
CREATE TABLE divergence_resolutions (
    divergence_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    resolved_at INTEGER NOT NULL
)
