-- Budget counts: the decisions each budgeted rule allowed, per scope (the
-- values of its `by` dimensions) and fixed window. One row per window; rows
-- of ended windows are purged.
CREATE TABLE policy_budgets (
    rule_id      TEXT   NOT NULL,
    scope        TEXT   NOT NULL,
    window_start BIGINT NOT NULL,   -- seconds since the Unix epoch
    window_end   BIGINT NOT NULL,
    used         BIGINT NOT NULL,
    PRIMARY KEY (rule_id, scope, window_start)
);
CREATE INDEX policy_budgets_by_end ON policy_budgets (window_end);
