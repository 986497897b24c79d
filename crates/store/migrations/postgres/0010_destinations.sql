-- Where a credential's secret may be sent (issue 13): a JSON array of normalized destination
-- patterns. NULL means "not computed yet": the server fills it at start with the destinations
-- of the connections attached at upgrade (so nothing that works breaks), and treats NULL as
-- allowing nothing until then.
ALTER TABLE credentials ADD COLUMN allowed_destinations TEXT;

-- The source credential of an AWS role chain hop (from the version's public fields), so usage,
-- the unused report, the delete guard and rotation dependents can follow chains.
ALTER TABLE credential_versions ADD COLUMN source_credential_id TEXT;
UPDATE credential_versions
   SET source_credential_id = public_fields::jsonb ->> 'source_credential_id'
 WHERE public_fields LIKE '%source_credential_id%';
CREATE INDEX credential_versions_source ON credential_versions (source_credential_id)
    WHERE source_credential_id IS NOT NULL;
