-- Policy schema. Portable SQL: the same file serves SQLite and PostgreSQL.

-- Every stored policy set revision (content hash of the compiled set).
CREATE TABLE policy_sets (
    revision             TEXT   PRIMARY KEY,
    seq                  BIGINT NOT NULL UNIQUE,  -- storage order, for listing
    source_yaml          TEXT   NOT NULL,
    description          TEXT   NOT NULL,
    default_decision     TEXT   NOT NULL,
    escalate_high_risk   BIGINT NOT NULL,         -- 0 or 1
    rule_count           BIGINT NOT NULL,
    created_by           TEXT   NOT NULL,
    created_at_us        BIGINT NOT NULL,
    last_activated_at_us BIGINT NOT NULL
);

-- Which revision is active. activation_seq grows with every activation, so
-- replicas notice a change (even back to an earlier revision) by polling it.
CREATE TABLE policy_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    active_revision TEXT    NOT NULL,
    activation_seq  BIGINT  NOT NULL,
    activated_at_us BIGINT  NOT NULL
);
INSERT INTO policy_state (id, active_revision, activation_seq, activated_at_us) VALUES (1, '', 0, 0);
