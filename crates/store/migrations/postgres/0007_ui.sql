-- credvault schema 7 (PostgreSQL): web UI sign-in for people.
-- Keep in step with migrations/sqlite/0007_ui.sql.

-- A user's sign-in password (Argon2id) and its lock-out state. `login` is the lowercased
-- principal name, unique across the instance.
CREATE TABLE principal_passwords (
    principal_id TEXT PRIMARY KEY REFERENCES principals(id),
    login        TEXT NOT NULL UNIQUE,
    phc          TEXT NOT NULL,
    failed       BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT,
    updated_at   BIGINT NOT NULL
);

-- Browser sessions: only the SHA-256 of the cookie value is stored.
CREATE TABLE ui_sessions (
    hash         BYTEA PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    principal_id TEXT NOT NULL REFERENCES principals(id),
    csrf         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX ui_sessions_principal ON ui_sessions (principal_id);
