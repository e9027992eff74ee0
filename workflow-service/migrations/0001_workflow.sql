-- Workflow schema. Portable SQL: the same file serves SQLite and PostgreSQL.

CREATE TABLE workflows (
    workflow_id     TEXT   PRIMARY KEY,        -- UUIDv7: ordered by creation
    name            TEXT   NOT NULL,
    draft_json      TEXT   NOT NULL,           -- the spec as submitted (re-validated on load)
    status          TEXT   NOT NULL,
    submitter       TEXT   NOT NULL,           -- type:id of the authenticated caller
    submitter_roles TEXT   NOT NULL,           -- JSON array
    request_id      TEXT,                      -- NULL without one; unique per submitter
    owner           TEXT   NOT NULL,
    failure_reason  TEXT   NOT NULL,
    failed_step     TEXT   NOT NULL,
    event_seq       BIGINT NOT NULL,           -- last workflow_events.seq
    created_at_us   BIGINT NOT NULL,
    updated_at_us   BIGINT NOT NULL,
    ended_at_us     BIGINT NOT NULL
);
CREATE UNIQUE INDEX workflows_by_request ON workflows (submitter, request_id);
CREATE INDEX workflows_by_status ON workflows (status, workflow_id);

CREATE TABLE workflow_steps (
    workflow_id        TEXT   NOT NULL,
    step_name          TEXT   NOT NULL,
    position           BIGINT NOT NULL,        -- topological order of the spec
    status             TEXT   NOT NULL,
    attempt            BIGINT NOT NULL,
    capability_version TEXT   NOT NULL,
    risk_level         TEXT   NOT NULL,
    resolved_inputs    TEXT   NOT NULL,        -- JSON
    outputs            TEXT   NOT NULL,        -- JSON
    decision           TEXT   NOT NULL,        -- JSON decision record
    approval_id        TEXT   NOT NULL,
    error              TEXT   NOT NULL,        -- verbatim
    undo               TEXT   NOT NULL,        -- JSON undo record of the handler
    completed_seq      BIGINT NOT NULL,        -- completion order (0: not completed)
    started_at_us      BIGINT NOT NULL,
    ended_at_us        BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, step_name)
);

CREATE TABLE workflow_compensations (
    workflow_id    TEXT   NOT NULL,
    step_name      TEXT   NOT NULL,
    position       BIGINT NOT NULL,            -- 1 = first to run (reverse completion order)
    capability_id  TEXT   NOT NULL,
    inputs         TEXT   NOT NULL,            -- JSON
    status         TEXT   NOT NULL,
    attempts       BIGINT NOT NULL,
    error          TEXT   NOT NULL,
    started_at_us  BIGINT NOT NULL,
    ended_at_us    BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, step_name)
);

-- Everything that happened to a workflow, in order: WatchWorkflow replays it.
CREATE TABLE workflow_events (
    workflow_id    TEXT   NOT NULL,
    seq            BIGINT NOT NULL,
    occurred_at_us BIGINT NOT NULL,
    kind           TEXT   NOT NULL,
    step_name      TEXT   NOT NULL,
    detail         TEXT   NOT NULL,            -- JSON
    PRIMARY KEY (workflow_id, seq)
);
