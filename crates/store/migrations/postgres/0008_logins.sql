-- Sign-in names are unique per organization, not across the instance: `login` (the
-- lowercased principal name) loses its UNIQUE constraint; people whose name is taken in
-- another organization sign in as `organization/name`.
ALTER TABLE principal_passwords DROP CONSTRAINT principal_passwords_login_key;
CREATE INDEX principal_passwords_login ON principal_passwords (login);

-- Browsers that signed in before ("device cookies"). A sign-in that presents one is counted
-- against that browser, not the account, so someone guessing a known name cannot keep its
-- owner out. Only the SHA-256 of the cookie value is stored; backups leave the table out.
CREATE TABLE ui_devices (
    hash         BYTEA PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals(id),
    failed       BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX ui_devices_principal ON ui_devices (principal_id);
