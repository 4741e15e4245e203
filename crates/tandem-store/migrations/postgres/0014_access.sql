-- Principals, their tokens and role assignments (the `access` class,
-- journaled as deployment-wide records), who caused each journal record,
-- and when each token was last used in this region (bookkeeping: not
-- journaled, not state).
CREATE TABLE principals (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    password_hash TEXT,
    disabled BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE tokens (
    token_id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX tokens_by_principal ON tokens (principal);
CREATE TABLE role_assignments (
    principal TEXT NOT NULL,
    role TEXT NOT NULL,
    -- '' for the whole deployment, else the workspace's id.
    scope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (principal, role, scope)
);
CREATE TABLE token_usage (
    token_id TEXT PRIMARY KEY,
    last_used_at BIGINT NOT NULL
);
ALTER TABLE journal ADD COLUMN principal TEXT;
CREATE INDEX journal_by_principal ON journal (principal, seq);
