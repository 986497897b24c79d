-- credvault schema 6 (SQLite): OAuth consent state, grant health, refresh leases.
-- Keep in step with migrations/postgres/0006_oauth.sql.

-- One row per authorization request: single-use, bound to credential and principal, short-lived.
CREATE TABLE oauth_states (
    state         TEXT PRIMARY KEY,
    credential_id TEXT NOT NULL,
    principal_id  TEXT NOT NULL,
    authorized_as TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    redirect_uri  TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
);

-- Single-flight refresh across nodes: whoever holds the lease refreshes.
CREATE TABLE oauth_leases (
    credential_id TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    until         INTEGER NOT NULL
);

ALTER TABLE credentials ADD COLUMN oauth_health TEXT;
ALTER TABLE credentials ADD COLUMN oauth_health_reason TEXT;
ALTER TABLE credentials ADD COLUMN oauth_authorized_by TEXT;
ALTER TABLE credentials ADD COLUMN oauth_refreshed_at INTEGER;
CREATE INDEX credentials_oauth_authorized_by ON credentials (oauth_authorized_by);
