-- Approvals and the webhook outbox. Portable SQL (SQLite and PostgreSQL).

-- One request for a human decision on one step. `action_digest` binds the
-- decision to the exact action (capability version, risk, resolved inputs,
-- principal, policy revision); a changed action voids it.
CREATE TABLE approvals (
    approval_id        TEXT   PRIMARY KEY,     -- UUIDv7: ordered by creation
    workflow_id        TEXT   NOT NULL,
    workflow_name      TEXT   NOT NULL,
    step_name          TEXT   NOT NULL,
    capability_id      TEXT   NOT NULL,        -- empty for HUMAN_APPROVAL steps
    capability_version TEXT   NOT NULL,
    risk_level         TEXT   NOT NULL,
    resolved_inputs    TEXT   NOT NULL,        -- JSON, as the step would run
    decision           TEXT   NOT NULL,        -- JSON decision record
    action_digest      TEXT   NOT NULL,
    approver_roles     TEXT   NOT NULL,        -- JSON array, any-of
    message            TEXT   NOT NULL,
    status             TEXT   NOT NULL,        -- PENDING | APPROVED | REJECTED | EXPIRED | VOID
    requested_for      TEXT   NOT NULL,        -- the workflow's submitter
    decided_by         TEXT   NOT NULL,
    comment            TEXT   NOT NULL,        -- the approver's
    status_reason      TEXT   NOT NULL,        -- why the service closed it (EXPIRED, VOID)
    requested_at_us    BIGINT NOT NULL,
    expires_at_us      BIGINT NOT NULL,
    decided_at_us      BIGINT NOT NULL
);
CREATE INDEX approvals_by_status ON approvals (status, approval_id);
CREATE INDEX approvals_by_workflow ON approvals (workflow_id, approval_id);
CREATE INDEX approvals_by_expiry ON approvals (status, expires_at_us);

-- Webhook deliveries, written in the transaction of the event they announce
-- and sent afterwards with retries: a down endpoint never blocks a workflow.
CREATE TABLE webhook_outbox (
    delivery_id        TEXT   PRIMARY KEY,     -- UUIDv7
    approval_id        TEXT   NOT NULL,        -- empty for workflow.finished
    workflow_id        TEXT   NOT NULL,
    url                TEXT   NOT NULL,
    event              TEXT   NOT NULL,        -- approval.requested | approval.decided | workflow.finished
    payload            TEXT   NOT NULL,        -- the exact body that is signed and sent
    status             TEXT   NOT NULL,        -- PENDING | DELIVERED | FAILED
    attempts           BIGINT NOT NULL,
    last_error         TEXT   NOT NULL,
    last_attempt_at_us BIGINT NOT NULL,
    next_attempt_at_us BIGINT NOT NULL,
    created_at_us      BIGINT NOT NULL
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (status, next_attempt_at_us);
CREATE INDEX webhook_outbox_by_approval ON webhook_outbox (approval_id, delivery_id);
