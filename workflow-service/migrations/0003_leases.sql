-- Leases: which workflow-service instance drives a workflow, and until when.
-- An instance claims a workflow before driving it and renews the lease while
-- it works; every write of the driver checks that it still holds it
-- (fencing). A released lease has no owner; an expired one may be claimed by
-- any instance.
ALTER TABLE workflows ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE workflows ADD COLUMN lease_expires_at_us BIGINT NOT NULL DEFAULT 0;
CREATE INDEX workflows_by_lease ON workflows (status, lease_expires_at_us);

-- A cancellation requested through any replica, for the replica that drives
-- the workflow: JSON {"rollback": bool, "reason": "..."}; empty when none.
ALTER TABLE workflows ADD COLUMN cancel_request TEXT NOT NULL DEFAULT '';
