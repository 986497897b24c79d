-- credvault schema 3 (SQLite): Test connection results.
-- Keep in step with migrations/postgres/0003_tests.sql.

CREATE TABLE connection_tests (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    version       INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    ok            INTEGER NOT NULL,
    latency_ms    INTEGER NOT NULL,
    error_code    TEXT,
    error_message TEXT,
    tested_by     TEXT NOT NULL
);
CREATE INDEX connection_tests_connection ON connection_tests (connection_id, seq);
CREATE INDEX connection_tests_credential ON connection_tests (credential_id, version, seq);

ALTER TABLE connections ADD COLUMN last_test_at INTEGER;
ALTER TABLE connections ADD COLUMN last_test_ok INTEGER;
ALTER TABLE connections ADD COLUMN last_test_latency_ms INTEGER;
ALTER TABLE connections ADD COLUMN last_test_error_code TEXT;
ALTER TABLE connections ADD COLUMN last_test_version INTEGER;
