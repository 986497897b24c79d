-- credvault schema 5 (PostgreSQL): audit forwarding cursors.
-- Keep in step with migrations/sqlite/0005_sinks.sql.

-- One row per configured sink: the last sequence number delivered (at least once), and a
-- lease so that only one node forwards a sink at a time.
CREATE TABLE sink_cursors (
    name        TEXT PRIMARY KEY,
    last_seq    BIGINT NOT NULL,
    owner       TEXT,
    lease_until BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
