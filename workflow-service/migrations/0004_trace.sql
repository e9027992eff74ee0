-- Trace context: the W3C `traceparent` of the call that submitted a workflow
-- (every later run of it, after an approval or on another replica, joins
-- that trace), and of the run that queued a webhook delivery (the delivery's
-- request carries it). Empty when nothing was traced.
ALTER TABLE workflows ADD COLUMN trace_parent TEXT NOT NULL DEFAULT '';
ALTER TABLE webhook_outbox ADD COLUMN trace_parent TEXT NOT NULL DEFAULT '';
