-- The hash-chained audit log (see airt_kit::audit).
CREATE TABLE audit_events (
    sequence       BIGINT  PRIMARY KEY,
    event_id       TEXT    NOT NULL UNIQUE,
    occurred_at_us BIGINT  NOT NULL,
    actor          TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    resource_type  TEXT    NOT NULL,
    resource_id    TEXT    NOT NULL,
    details        TEXT    NOT NULL,  -- canonical JSON, exactly the bytes hashed
    prev_hash      TEXT    NOT NULL,
    hash           TEXT    NOT NULL
);
CREATE INDEX audit_events_by_resource ON audit_events (resource_type, resource_id, sequence);
CREATE INDEX audit_events_by_action ON audit_events (action, sequence);

-- The last appended event; appends serialise on this row, and verification
-- compares the chain's end with it, so deleting the newest events shows.
CREATE TABLE audit_head (
    id       SMALLINT PRIMARY KEY CHECK (id = 1),
    sequence BIGINT  NOT NULL,
    hash     TEXT    NOT NULL
);
INSERT INTO audit_head (id, sequence, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
