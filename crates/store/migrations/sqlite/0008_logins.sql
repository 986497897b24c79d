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

-- Browsers that signed in before ("device cookies"). A sign-in that presents one is counted
-- against that browser, not the account, so someone guessing a known name cannot keep its
-- owner out. Only the SHA-256 of the cookie value is stored; backups leave the table out.
CREATE TABLE ui_devices (
    hash         BLOB PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals(id),
    failed       INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX ui_devices_principal ON ui_devices (principal_id);
