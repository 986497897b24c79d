-- credvault schema 1 (PostgreSQL). Times are microseconds since the epoch; booleans are 0/1.
-- Keep in step with migrations/sqlite/0001_init.sql.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE orgs (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL UNIQUE,
    settings   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT
);

CREATE TABLE workspaces (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    org_id     TEXT NOT NULL REFERENCES orgs(id),
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    UNIQUE (org_id, name)
);

CREATE TABLE principals (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    org_id         TEXT NOT NULL REFERENCES orgs(id),
    kind           TEXT NOT NULL,
    name           TEXT NOT NULL,
    instance_admin BIGINT NOT NULL DEFAULT 0,
    disabled       BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    created_by     TEXT,
    UNIQUE (org_id, name)
);

CREATE TABLE role_bindings (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    principal_id TEXT NOT NULL REFERENCES principals(id),
    role         TEXT NOT NULL,
    workspace_id TEXT REFERENCES workspaces(id),
    scope_key    TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT,
    UNIQUE (principal_id, role, scope_key)
);
CREATE INDEX role_bindings_principal ON role_bindings (principal_id);

CREATE TABLE tokens (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    principal_id TEXT NOT NULL REFERENCES principals(id),
    hash         BYTEA NOT NULL UNIQUE,
    name         TEXT,
    created_at   BIGINT NOT NULL,
    created_by   TEXT,
    expires_at   BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX tokens_principal ON tokens (principal_id);

CREATE TABLE credentials (
    seq                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                   TEXT NOT NULL UNIQUE,
    org_id               TEXT NOT NULL REFERENCES orgs(id),
    workspace_id         TEXT REFERENCES workspaces(id),
    scope_key            TEXT NOT NULL,
    name                 TEXT NOT NULL,
    type                 TEXT NOT NULL,
    variant              TEXT,
    environment          TEXT NOT NULL,
    labels               TEXT NOT NULL,
    description          TEXT,
    status               TEXT NOT NULL,
    expires_at           BIGINT,
    rotation_period_days BIGINT,
    current_version      BIGINT NOT NULL,
    owner_id             TEXT,
    created_at           BIGINT NOT NULL,
    created_by           TEXT NOT NULL,
    updated_at           BIGINT NOT NULL,
    deleted_at           BIGINT,
    last_used_at         BIGINT,
    UNIQUE (scope_key, name)
);
CREATE INDEX credentials_org ON credentials (org_id, seq);
CREATE INDEX credentials_ws ON credentials (workspace_id, seq);

CREATE TABLE credential_labels (
    credential_id TEXT NOT NULL REFERENCES credentials(id),
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    PRIMARY KEY (credential_id, key)
);
CREATE INDEX credential_labels_kv ON credential_labels (key, value);

CREATE TABLE credential_versions (
    credential_id     TEXT NOT NULL REFERENCES credentials(id),
    version           BIGINT NOT NULL,
    state             TEXT NOT NULL,
    kek_id            TEXT,
    wrapped_key       BYTEA,
    ciphertext        BYTEA,
    public_fields     TEXT NOT NULL,
    secret_fields_set TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    created_by        TEXT NOT NULL,
    state_changed_at  BIGINT NOT NULL,
    PRIMARY KEY (credential_id, version)
);
CREATE UNIQUE INDEX credential_versions_one_current
    ON credential_versions (credential_id) WHERE state = 'current';

CREATE TABLE audit_heads (
    chain   TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    hash    BYTEA NOT NULL
);

CREATE TABLE audit_events (
    seq          BIGINT PRIMARY KEY,
    chain        TEXT NOT NULL,
    at           BIGINT NOT NULL,
    org_id       TEXT,
    workspace_id TEXT,
    actor_id     TEXT,
    actor_kind   TEXT NOT NULL,
    action       TEXT NOT NULL,
    target_type  TEXT,
    target_id    TEXT,
    outcome      TEXT NOT NULL,
    source_ip    TEXT,
    user_agent   TEXT,
    request_id   TEXT,
    details      TEXT NOT NULL,
    prev_hash    BYTEA NOT NULL,
    hash         BYTEA NOT NULL
);
CREATE INDEX audit_events_chain ON audit_events (chain, seq);
CREATE INDEX audit_events_action ON audit_events (action, seq);
CREATE INDEX audit_events_target ON audit_events (target_id, seq);

-- Audit sequence numbers come from this sequence, taken while the chain head is locked.
CREATE SEQUENCE audit_seq;
