-- DDI authentication. `ddi_gateway_token`: whether the project key may act as a DDI
-- `GatewayToken` (true: what every project did before); a fleet that provisions each device its
-- own TargetToken turns it off. The index: a TargetToken is checked by its hash (one index probe,
-- store.ddi.token_owners) before any device state is built, so an unknown token costs no more.
-- IF NOT EXISTS: this migration may meet a database that already has them (a re-run by hand).
ALTER TABLE projects ADD COLUMN IF NOT EXISTS ddi_gateway_token boolean NOT NULL DEFAULT true;
CREATE INDEX IF NOT EXISTS devices_ddi_token ON devices (project_id, ddi_token_hash, serial)
    WHERE ddi_token_hash IS NOT NULL;
