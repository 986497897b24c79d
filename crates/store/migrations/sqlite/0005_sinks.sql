-- credvault schema 5 (SQLite): audit forwarding cursors.
-- Keep in step with migrations/postgres/0005_sinks.sql.

-- One row per configured sink: the last sequence number delivered (at least once), and a
-- lease so that only one node forwards a sink at a time.
CREATE TABLE sink_cursors (
    name        TEXT PRIMARY KEY,
    last_seq    INTEGER NOT NULL,
    owner       TEXT,
    lease_until INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
