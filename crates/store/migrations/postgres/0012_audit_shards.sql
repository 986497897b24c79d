-- Audit shards (issue 22): an organization's events may spread over several chains
-- (`{org}` and `{org}#k`); each head names its organization so an append can pick a free one.
ALTER TABLE audit_heads ADD COLUMN org TEXT;
UPDATE audit_heads SET org = chain;
CREATE INDEX audit_heads_org ON audit_heads (org);
-- Listing an organization's events reads every shard in one sequence order.
CREATE INDEX audit_events_org ON audit_events (org_id, seq);
