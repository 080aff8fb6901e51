-- Staged rollouts (domain/staging.py, store/staging.py): membership per activation instead of one
-- flag per device shared by every staged activation of its cohort.

-- The hash that orders an activation's draw, the same in Python (domain.staging.stage_hash):
-- the first 8 bytes of md5("salt:serial") as a signed bigint.
CREATE OR REPLACE FUNCTION stage_hash(salt bigint, serial text) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT ('x' || left(md5(salt::text || ':' || serial), 16))::bit(64)::bigint $$;

-- The software type of the activation's release (to allow one staged activation per cohort and
-- software type), the salt of its draw, and, when devices that join the cohort later are staged
-- by the hash (off by default, as Memfault does), the threshold below which they are.
ALTER TABLE activations ADD COLUMN IF NOT EXISTS software_type text;
UPDATE activations a SET software_type = r.software_type FROM releases r
WHERE r.id = a.release_id AND a.software_type IS NULL;
ALTER TABLE activations ALTER COLUMN software_type SET NOT NULL;
ALTER TABLE activations ADD COLUMN IF NOT EXISTS stage_salt bigint NOT NULL
    DEFAULT (floor(random() * 4611686018427387903))::bigint + 1;
ALTER TABLE activations ADD COLUMN IF NOT EXISTS stage_threshold bigint;

-- At most one active staged activation per (cohort, software type). Before, several could be
-- active side by side, sharing one staged flag: the newest stays, older ones are pulled (a staged
-- device was offered the newest of them already, resolution taking the highest version).
UPDATE activations a SET status = 'pulled', pulled_by = 'migration 0007', pulled_at = now()
WHERE a.status = 'active' AND a.type = 'staged_rollout' AND EXISTS (
    SELECT 1 FROM activations b WHERE b.status = 'active' AND b.type = 'staged_rollout'
      AND b.cohort_id = a.cohort_id AND b.software_type = a.software_type AND b.id > a.id);
CREATE UNIQUE INDEX IF NOT EXISTS activations_one_staged ON activations (cohort_id, software_type)
    WHERE status = 'active' AND type = 'staged_rollout';

-- Who an activation staged (true) or explicitly left out (false); a device without a row is
-- staged only by the newcomer rule (stage_threshold). Read per device (the mirror) and per
-- activation (draws, counts).
CREATE TABLE IF NOT EXISTS staged_devices (
    activation_id  bigint NOT NULL REFERENCES activations(id) ON DELETE CASCADE,
    device_id      bigint NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    staged         boolean NOT NULL,
    PRIMARY KEY (activation_id, device_id)
);
CREATE INDEX IF NOT EXISTS staged_devices_device ON staged_devices (device_id);

-- The old flag, carried over to the staged activation of the device's cohort (every software type
-- it had one for: the flag applied to all of them).
INSERT INTO staged_devices (activation_id, device_id, staged)
SELECT a.id, d.id, true FROM devices d
JOIN activations a ON a.cohort_id = d.cohort_id AND a.status = 'active' AND a.type = 'staged_rollout'
WHERE d.staged
ON CONFLICT DO NOTHING;
