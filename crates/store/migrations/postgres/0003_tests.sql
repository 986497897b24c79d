-- credvault schema 3 (PostgreSQL): Test connection results.
-- Keep in step with migrations/sqlite/0003_tests.sql.

CREATE TABLE connection_tests (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection_id TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    version       BIGINT NOT NULL,
    at            BIGINT NOT NULL,
    ok            BIGINT NOT NULL,
    latency_ms    BIGINT NOT NULL,
    error_code    TEXT,
    error_message TEXT,
    tested_by     TEXT NOT NULL
);
CREATE INDEX connection_tests_connection ON connection_tests (connection_id, seq);
CREATE INDEX connection_tests_credential ON connection_tests (credential_id, version, seq);

ALTER TABLE connections ADD COLUMN last_test_at BIGINT;
ALTER TABLE connections ADD COLUMN last_test_ok BIGINT;
ALTER TABLE connections ADD COLUMN last_test_latency_ms BIGINT;
ALTER TABLE connections ADD COLUMN last_test_error_code TEXT;
ALTER TABLE connections ADD COLUMN last_test_version BIGINT;
