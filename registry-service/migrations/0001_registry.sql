-- Registry schema. Portable SQL: the same file serves SQLite and PostgreSQL.

-- The registry revision: incremented by every change; the change feed's clock.
CREATE TABLE registry_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT  NOT NULL
);
INSERT INTO registry_head (id, revision) VALUES (1, 0);

-- Every published revision (id + semantic version). Content is immutable;
-- lifecycle is state.
CREATE TABLE capability_revisions (
    capability_id     TEXT   NOT NULL,
    version           TEXT   NOT NULL,
    spec_json         TEXT   NOT NULL,  -- canonical JSON of the validated spec
    content_digest    TEXT   NOT NULL,  -- SHA-256 of spec_json
    risk_level        TEXT   NOT NULL,
    lifecycle         TEXT   NOT NULL,
    lifecycle_reason  TEXT   NOT NULL,
    registered_by     TEXT   NOT NULL,
    registry_revision BIGINT NOT NULL,  -- revision of the last change to this row
    created_at_us     BIGINT NOT NULL,
    updated_at_us     BIGINT NOT NULL,
    PRIMARY KEY (capability_id, version)
);

CREATE TABLE capability_tags (
    capability_id TEXT NOT NULL,
    version       TEXT NOT NULL,
    tag           TEXT NOT NULL,
    PRIMARY KEY (capability_id, version, tag)
);

-- One row per id: the revision GetCapability(id) returns.
CREATE TABLE capabilities (
    capability_id   TEXT PRIMARY KEY,
    current_version TEXT NOT NULL
);

-- The change feed behind WatchCapabilities, with the lifecycle as it was.
CREATE TABLE capability_changes (
    registry_revision BIGINT PRIMARY KEY,
    capability_id     TEXT   NOT NULL,
    version           TEXT   NOT NULL,
    change_type       TEXT   NOT NULL,
    lifecycle         TEXT   NOT NULL,
    lifecycle_reason  TEXT   NOT NULL,
    occurred_at_us    BIGINT NOT NULL
);
