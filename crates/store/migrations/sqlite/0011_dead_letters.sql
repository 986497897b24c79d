-- Audit events a sink can never take (a receiver that refuses one event as too large, say):
-- parked here so forwarding moves on; the event itself stays in the journal (issue 15).
CREATE TABLE audit_dead_letters (
    sink      TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    error     TEXT NOT NULL,
    parked_at INTEGER NOT NULL,
    PRIMARY KEY (sink, seq)
);
