-- Sign-in names are unique per organization, not across the instance: `login` (the
-- lowercased principal name) loses its UNIQUE constraint; people whose name is taken in
-- another organization sign in as `organization/name`.
ALTER TABLE principal_passwords DROP CONSTRAINT principal_passwords_login_key;
CREATE INDEX principal_passwords_login ON principal_passwords (login);
