-- Protected cohorts (2ec5080): any change that alters what a device of a cohort requiring approval
-- gets is filed as a request, not only activations: `action` names the change (domain.access),
-- `params` what to carry out on approval; a request need not name a release. Requests filed
-- before (params NULL) are still carried out from their typed columns.
-- IF [NOT] EXISTS: databases started by the development builds between 5c070d0 and numbered
-- migrations already have these changes (their schema.sql re-applied them at every start).
ALTER TABLE activation_requests ADD COLUMN IF NOT EXISTS params jsonb;
ALTER TABLE activation_requests ALTER COLUMN release_id DROP NOT NULL;
ALTER TABLE activation_requests DROP CONSTRAINT IF EXISTS activation_requests_action_check;
