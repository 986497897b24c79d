-- credvault schema 4 (SQLite): alert bookkeeping for the scheduler.
-- Keep in step with migrations/postgres/0004_lifecycle.sql.

-- One row per alert already raised, so each threshold fires once per expiry date / version.
CREATE TABLE alerts_sent (
    credential_id TEXT NOT NULL,
    kind          TEXT NOT NULL,
    threshold     INTEGER NOT NULL,
    ref_time      INTEGER NOT NULL,
    sent_at       INTEGER NOT NULL,
    PRIMARY KEY (credential_id, kind, threshold, ref_time)
);
