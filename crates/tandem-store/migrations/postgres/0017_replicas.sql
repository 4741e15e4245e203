-- Several server processes of one region on one database (issue 17).
--
-- The write fence, read by every process's writes with the journal head
-- (the row they lock already): local writes that need the primary's lease
-- are refused once `writes_until` (milliseconds since the epoch) has passed
-- or while `writes_closed` says why they stopped (a planned failover, a
-- lease lost). The process holding the region's duties keeps both; NULL
-- in both is a region that fences nothing (standalone, or no witness).
ALTER TABLE region_state ADD COLUMN writes_until BIGINT;
ALTER TABLE region_state ADD COLUMN writes_closed TEXT;

-- What the duty holder knows of the region (role, lease, following,
-- readiness) for the other processes to serve by: one JSON document,
-- versioned inside (`format`), region-local and not journaled.
CREATE TABLE region_runtime (
    id INTEGER PRIMARY KEY,
    holder TEXT NOT NULL,
    document TEXT NOT NULL,
    published_at BIGINT NOT NULL
);

-- Secondaries' acknowledgements, which reach whichever process serves
-- their stream: shared so that every process measures the same RPO and a
-- synchronous write anywhere sees its confirmation. Region-local.
CREATE TABLE replication_acks (
    region TEXT PRIMARY KEY,
    applied BIGINT NOT NULL,
    acknowledged_at BIGINT NOT NULL
);

-- The region's replicas as each last said it was alive (every second),
-- for `tandem status`: which answer, and which holds the duties.
-- Region-local; rows of replicas gone for an hour are dropped.
CREATE TABLE region_replicas (
    replica TEXT PRIMARY KEY,
    url TEXT,
    holds_duties INTEGER NOT NULL,
    seen_at BIGINT NOT NULL
);

-- Direct multipart uploads created and not yet completed or aborted, when
-- the region's replicas share them (PostgreSQL): created through one
-- replica, completed through any. Region-local.
CREATE TABLE direct_uploads (
    storage_key TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    num_parts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (storage_key, upload_id)
);
