-- credvault schema 2 (SQLite): connections, pipelines, reviews.
-- Keep in step with migrations/postgres/0002_connections.sql.

CREATE TABLE connections (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    org_id          TEXT NOT NULL REFERENCES orgs(id),
    workspace_id    TEXT NOT NULL REFERENCES workspaces(id),
    name            TEXT NOT NULL,
    environment     TEXT NOT NULL,
    kind            TEXT NOT NULL,
    config          TEXT NOT NULL,
    credential_id   TEXT REFERENCES credentials(id),
    override_reason TEXT,
    attached_at     INTEGER,
    attached_by     TEXT,
    description     TEXT,
    created_at      INTEGER NOT NULL,
    created_by      TEXT NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_used_at    INTEGER,
    UNIQUE (workspace_id, name)
);
CREATE INDEX connections_org ON connections (org_id, seq);
CREATE INDEX connections_ws ON connections (workspace_id, seq);
CREATE INDEX connections_credential ON connections (credential_id);

CREATE TABLE pipelines (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name         TEXT NOT NULL,
    description  TEXT,
    created_at   INTEGER NOT NULL,
    created_by   TEXT NOT NULL,
    updated_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    UNIQUE (workspace_id, name)
);
CREATE INDEX pipelines_org ON pipelines (org_id, seq);

CREATE TABLE pipeline_connections (
    pipeline_id   TEXT NOT NULL REFERENCES pipelines(id),
    connection_id TEXT NOT NULL REFERENCES connections(id),
    PRIMARY KEY (pipeline_id, connection_id)
);
CREATE INDEX pipeline_connections_connection ON pipeline_connections (connection_id);

CREATE TABLE reviews (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    org_id        TEXT NOT NULL REFERENCES orgs(id),
    credential_id TEXT NOT NULL REFERENCES credentials(id),
    reviewer_id   TEXT NOT NULL,
    decision      TEXT NOT NULL,
    note          TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX reviews_credential ON reviews (credential_id, seq);

ALTER TABLE credentials ADD COLUMN last_reviewed_at INTEGER;
