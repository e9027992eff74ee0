-- The shadow set: evaluated beside the active one, logged, never enforced.
-- Changing it bumps activation_seq too, so replicas pick it up.
ALTER TABLE policy_state ADD COLUMN shadow_revision TEXT NOT NULL DEFAULT '';
