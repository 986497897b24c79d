-- credvault schema 4 (PostgreSQL): alert bookkeeping for the scheduler.
-- Keep in step with migrations/sqlite/0004_lifecycle.sql.

-- One row per alert already raised, so each threshold fires once per expiry date / version.
CREATE TABLE alerts_sent (
    credential_id TEXT NOT NULL,
    kind          TEXT NOT NULL,
    threshold     BIGINT NOT NULL,
    ref_time      BIGINT NOT NULL,
    sent_at       BIGINT NOT NULL,
    PRIMARY KEY (credential_id, kind, threshold, ref_time)
);
