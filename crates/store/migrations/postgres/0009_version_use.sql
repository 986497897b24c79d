-- When each version last answered a resolve (1 s grain), so an operator can see that the old
-- version of a rotation is no longer used before revoking it.
ALTER TABLE credential_versions ADD COLUMN last_resolved_at BIGINT;
