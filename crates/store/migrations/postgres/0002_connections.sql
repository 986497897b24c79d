-- credvault schema 2 (PostgreSQL): connections, pipelines, reviews.
-- Keep in step with migrations/sqlite/0002_connections.sql.

CREATE TABLE connections (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    org_id          TEXT NOT NULL REFERENCES orgs(id),
    workspace_id    TEXT NOT NULL REFERENCES workspaces(id),
    name            TEXT NOT NULL,
    environment     TEXT NOT NULL,
    kind            TEXT NOT NULL,
    config          TEXT NOT NULL,
    credential_id   TEXT REFERENCES credentials(id),
    override_reason TEXT,
    attached_at     BIGINT,
    attached_by     TEXT,
    description     TEXT,
    created_at      BIGINT NOT NULL,
    created_by      TEXT NOT NULL,
    updated_at      BIGINT NOT NULL,
    last_used_at    BIGINT,
    UNIQUE (workspace_id, name)
);
CREATE INDEX connections_org ON connections (org_id, seq);
CREATE INDEX connections_ws ON connections (workspace_id, seq);
CREATE INDEX connections_credential ON connections (credential_id);

CREATE TABLE pipelines (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name         TEXT NOT NULL,
    description  TEXT,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    updated_at   BIGINT NOT NULL,
    last_used_at BIGINT,
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
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    org_id        TEXT NOT NULL REFERENCES orgs(id),
    credential_id TEXT NOT NULL REFERENCES credentials(id),
    reviewer_id   TEXT NOT NULL,
    decision      TEXT NOT NULL,
    note          TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX reviews_credential ON reviews (credential_id, seq);

ALTER TABLE credentials ADD COLUMN last_reviewed_at BIGINT;
