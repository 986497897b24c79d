-- Sign-in names are unique per organization, not across the instance: `login` (the
-- lowercased principal name) loses its UNIQUE constraint; people whose name is taken in
-- another organization sign in as `organization/name`. SQLite cannot drop a constraint, so
-- the table is rebuilt.
CREATE TABLE principal_passwords_new (
    principal_id TEXT PRIMARY KEY REFERENCES principals(id),
    login        TEXT NOT NULL,
    phc          TEXT NOT NULL,
    failed       INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER,
    updated_at   INTEGER NOT NULL
);
INSERT INTO principal_passwords_new (principal_id, login, phc, failed, locked_until, updated_at)
    SELECT principal_id, login, phc, failed, locked_until, updated_at FROM principal_passwords;
DROP TABLE principal_passwords;
ALTER TABLE principal_passwords_new RENAME TO principal_passwords;
CREATE INDEX principal_passwords_login ON principal_passwords (login);
