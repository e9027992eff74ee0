-- Indexes for ListWorkflows pages: a caller who is not an admin always
-- lists their own workflows (newest first), and an admin may list one
-- workflow name. With them, a first page reads about one page of rows
-- whatever the size of the table. IF NOT EXISTS: an operator may have built
-- them beforehand with CREATE INDEX CONCURRENTLY (docs/OPERATIONS.md).
CREATE INDEX IF NOT EXISTS workflows_by_submitter ON workflows (submitter, workflow_id);
CREATE INDEX IF NOT EXISTS workflows_by_name ON workflows (name, workflow_id);
