-- ota-gateway schema, migration 0001: the schema as of release 5c070d0, whose schema.sql every
-- release up to it re-applied at each start. It is idempotent (IF NOT EXISTS, and the ALTERs that
-- brought databases of earlier releases up to it), so it is also applied, once, to a database an
-- earlier release made. Never edit it: a change is a new numbered file next to it.
-- The ledger, schema_migrations, is created by gateway.store.db.apply_schema.

-- Server-wide settings, e.g. the URL-signing secret shared by every worker and host.
CREATE TABLE IF NOT EXISTS server_settings (
    key    text PRIMARY KEY,
    value  text NOT NULL
);

CREATE TABLE IF NOT EXISTS organizations (
    id          bigserial PRIMARY KEY,
    slug        text NOT NULL UNIQUE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The project slug is also the DDI tenant, so it is unique across organizations.
CREATE TABLE IF NOT EXISTS projects (
    id                       bigserial PRIMARY KEY,
    org_id                   bigint NOT NULL REFERENCES organizations(id),
    slug                     text NOT NULL UNIQUE,
    name                     text NOT NULL,
    strict_semver            boolean NOT NULL DEFAULT false,
    ddi_software_type        text,
    ddi_hardware_version     text,
    resolution_generation    bigint NOT NULL DEFAULT 0,
    created_at               timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS cohorts (
    id                    bigserial PRIMARY KEY,
    project_id            bigint NOT NULL REFERENCES projects(id),
    slug                  text NOT NULL,
    name                  text NOT NULL,
    is_default            boolean NOT NULL DEFAULT false,
    protected             boolean NOT NULL DEFAULT false,
    version_checking      boolean NOT NULL DEFAULT true,
    ddi_polling_interval  integer NOT NULL DEFAULT 43200,
    ddi_update_type       text NOT NULL DEFAULT 'forced' CHECK (ddi_update_type IN ('attempt', 'forced')),
    created_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, slug)
);
CREATE UNIQUE INDEX IF NOT EXISTS cohorts_one_default ON cohorts (project_id) WHERE is_default;

-- Secrets are stored as sha256 hex of the token (tokens are random, high-entropy).
CREATE TABLE IF NOT EXISTS project_keys (
    id                  bigserial PRIMARY KEY,
    project_id          bigint NOT NULL REFERENCES projects(id),
    name                text NOT NULL DEFAULT '',
    secret_hash         text NOT NULL UNIQUE,
    cohort_override_id  bigint REFERENCES cohorts(id),
    created_at          timestamptz NOT NULL DEFAULT now(),
    revoked_at          timestamptz
);

CREATE TABLE IF NOT EXISTS api_tokens (
    id                      bigserial PRIMARY KEY,
    org_id                  bigint NOT NULL REFERENCES organizations(id),
    name                    text NOT NULL DEFAULT '',
    secret_hash             text NOT NULL UNIQUE,
    role                    text NOT NULL DEFAULT 'manager' CHECK (role IN ('viewer', 'editor', 'manager')),
    can_activate_protected  boolean NOT NULL DEFAULT false,
    created_at              timestamptz NOT NULL DEFAULT now(),
    revoked_at              timestamptz
);

-- Users log in with email + secret (HTTP Basic); the secret is stored as a salted scrypt hash.
CREATE TABLE IF NOT EXISTS users (
    id           bigserial PRIMARY KEY,
    org_id       bigint NOT NULL REFERENCES organizations(id),
    email        text NOT NULL UNIQUE,
    secret_hash  text NOT NULL,
    role         text NOT NULL DEFAULT 'editor' CHECK (role IN ('viewer', 'editor', 'manager')),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Hardware versions and software types known to a project (a poll naming others gets 400).
CREATE TABLE IF NOT EXISTS hardware_versions (
    project_id  bigint NOT NULL REFERENCES projects(id),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, name)
);

CREATE TABLE IF NOT EXISTS software_types (
    project_id  bigint NOT NULL REFERENCES projects(id),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, name)
);

CREATE TABLE IF NOT EXISTS releases (
    id                 bigserial PRIMARY KEY,
    project_id         bigint NOT NULL REFERENCES projects(id),
    software_type      text NOT NULL,
    version            text NOT NULL,
    from_version       text,                       -- set => delta release
    must_pass_through  boolean NOT NULL DEFAULT false,
    revision           text NOT NULL DEFAULT '',
    notes              text NOT NULL DEFAULT '',
    extra_info         jsonb,
    created_by         text NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS releases_identity
    ON releases (project_id, software_type, version, coalesce(from_version, ''));

-- Uploaded bytes, content-addressed by sha256 under the storage directory.
CREATE TABLE IF NOT EXISTS uploads (
    id          bigserial PRIMARY KEY,
    project_id  bigint NOT NULL REFERENCES projects(id),
    token       text NOT NULL UNIQUE,
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'complete')),
    size        bigint,
    sha256      text,
    md5         text,
    sha1        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS payloads (
    id                bigserial PRIMARY KEY,
    release_id        bigint NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
    hardware_version  text NOT NULL,
    firmware_type     text NOT NULL DEFAULT 'firmware',
    filename          text NOT NULL,
    size              bigint NOT NULL,
    sha256            text NOT NULL,
    md5               text NOT NULL,
    sha1              text NOT NULL,
    extra_info        jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (release_id, hardware_version, firmware_type)
);

CREATE TABLE IF NOT EXISTS devices (
    id                   bigserial PRIMARY KEY,
    project_id           bigint NOT NULL REFERENCES projects(id),
    serial               text NOT NULL,
    hardware_version     text,
    cohort_id            bigint NOT NULL REFERENCES cohorts(id),
    staged               boolean NOT NULL DEFAULT false,
    release_override_id  bigint REFERENCES releases(id),
    created_at           timestamptz NOT NULL DEFAULT now(),
    last_seen            timestamptz,
    UNIQUE (project_id, serial)
);
-- The gateway mirrors only devices that deviate from their cohort's default answer.
CREATE INDEX IF NOT EXISTS devices_exceptions ON devices (project_id)
    WHERE staged OR release_override_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS devices_cohort ON devices (cohort_id);

-- Current version per (device, software type); history appended when it changes.
CREATE TABLE IF NOT EXISTS device_software (
    device_id      bigint NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    software_type  text NOT NULL,
    version        text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, software_type)
);
-- Check-ins rewrite last_seen and the current version in place: free room on each page lets
-- PostgreSQL keep the new row version on the same page without touching any index (HOT update).
ALTER TABLE devices SET (fillfactor = 85);
ALTER TABLE device_software SET (fillfactor = 85);

-- Append-only and written in bulk by the check-in path: no foreign key, whose per-row check
-- costs more than the insert itself (delete a device's history explicitly with the device), and
-- one index only: it is read per device, newest first (id order), never by id alone, so a primary
-- key index would be a second index insert per check-in for nothing.
CREATE TABLE IF NOT EXISTS device_version_history (
    id                bigserial NOT NULL,
    device_id         bigint NOT NULL,
    software_type     text NOT NULL,
    version           text NOT NULL,
    previous_version  text,
    protocol          text NOT NULL DEFAULT '',
    seen_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS device_version_history_device_id ON device_version_history (device_id, id);
ALTER TABLE device_version_history DROP CONSTRAINT IF EXISTS device_version_history_device_id_fkey;
ALTER TABLE device_version_history DROP CONSTRAINT IF EXISTS device_version_history_pkey;
DROP INDEX IF EXISTS device_version_history_device;

CREATE TABLE IF NOT EXISTS activations (
    id               bigserial PRIMARY KEY,
    project_id       bigint NOT NULL REFERENCES projects(id),
    release_id       bigint NOT NULL REFERENCES releases(id),
    cohort_id        bigint NOT NULL REFERENCES cohorts(id),
    type             text NOT NULL CHECK (type IN ('normal', 'staged_rollout')),
    rollout_percent  integer CHECK (rollout_percent BETWEEN 0 AND 100),
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'pulled')),
    created_by       text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    pulled_by        text,
    pulled_at        timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS activations_one_active ON activations (release_id, cohort_id) WHERE status = 'active';

-- Precomputed decision tables, one per (cohort, software type, hardware version, staged);
-- rebuilt in the same transaction as every change that can alter an answer.
CREATE TABLE IF NOT EXISTS resolution_cache (
    project_id        bigint NOT NULL REFERENCES projects(id),
    cohort_id         bigint NOT NULL REFERENCES cohorts(id),
    software_type     text NOT NULL,
    hardware_version  text NOT NULL,
    staged            boolean NOT NULL,
    decision          jsonb NOT NULL,
    PRIMARY KEY (project_id, cohort_id, software_type, hardware_version, staged)
);

-- Per-device poll rate limit (polls per device per minute, per gateway process); NULL = none.
ALTER TABLE projects ADD COLUMN IF NOT EXISTS poll_limit_per_minute integer CHECK (poll_limit_per_minute > 0);

-- Optional Ed25519 key per project: release manifests (the artifact hashes) are signed with it.
CREATE TABLE IF NOT EXISTS project_signing_keys (
    project_id  bigint PRIMARY KEY REFERENCES projects(id),
    seed        bytea NOT NULL,
    public_key  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A cohort may require a second identity to approve activation changes.
ALTER TABLE cohorts ADD COLUMN IF NOT EXISTS requires_approval boolean NOT NULL DEFAULT false;

-- Every change to an activation: created, rollout changed, pulled (who, when, before/after).
CREATE TABLE IF NOT EXISTS activation_events (
    id             bigserial PRIMARY KEY,
    project_id     bigint NOT NULL REFERENCES projects(id),
    activation_id  bigint NOT NULL,
    action         text NOT NULL,
    actor          text NOT NULL,
    before         jsonb,
    after          jsonb,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS activation_events_project ON activation_events (project_id, at);

-- Activation changes waiting for a second identity's approval.
CREATE TABLE IF NOT EXISTS activation_requests (
    id               bigserial PRIMARY KEY,
    project_id       bigint NOT NULL REFERENCES projects(id),
    cohort_id        bigint NOT NULL REFERENCES cohorts(id),
    release_id       bigint NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
    action           text NOT NULL CHECK (action IN ('activate', 'deactivate')),
    type             text NOT NULL DEFAULT 'normal',
    rollout_percent  integer,
    activation_id    bigint,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    requested_by     text NOT NULL,
    decided_by       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    decided_at       timestamptz
);

CREATE TABLE IF NOT EXISTS audit_log (
    id          bigserial PRIMARY KEY,
    project_id  bigint REFERENCES projects(id),
    actor       text NOT NULL,
    action      text NOT NULL,
    object      text NOT NULL,
    before      jsonb,
    after       jsonb,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS audit_log_project ON audit_log (project_id, id);

-- hawkBit DDI ------------------------------------------------------------------------------
-- Per-device DDI state: target token (sha256 hex), reported software type and attributes, and
-- whether the server wants the device's configData (new device, after an update, on request).
ALTER TABLE devices ADD COLUMN IF NOT EXISTS ddi_token_hash text;
ALTER TABLE devices ADD COLUMN IF NOT EXISTS ddi_software_type text;
ALTER TABLE devices ADD COLUMN IF NOT EXISTS ddi_attributes jsonb;
ALTER TABLE devices ADD COLUMN IF NOT EXISTS ddi_config_requested boolean NOT NULL DEFAULT true;

-- One DDI action per offer of a release to a device. The id is an int4 on purpose: SWUpdate
-- prints it with %d. A failed action blocks its release for the device until retried_at is set.
CREATE TABLE IF NOT EXISTS device_actions (
    id               serial PRIMARY KEY,
    project_id       bigint NOT NULL REFERENCES projects(id),
    device_id        bigint NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    release_id       bigint REFERENCES releases(id) ON DELETE SET NULL,
    payload_id       bigint,
    software_type    text NOT NULL,
    version          text NOT NULL,
    from_version     text,
    reason           text NOT NULL DEFAULT '',
    status           text NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'canceling', 'succeeded', 'failed', 'canceled')),
    cancel_rejected  boolean NOT NULL DEFAULT false,
    retrieved_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    closed_at        timestamptz,
    retried_at       timestamptz,
    retried_by       text
);
CREATE UNIQUE INDEX IF NOT EXISTS device_actions_one_open ON device_actions (device_id, software_type)
    WHERE status IN ('open', 'canceling');
CREATE INDEX IF NOT EXISTS device_actions_device ON device_actions (device_id, id);
CREATE INDEX IF NOT EXISTS device_actions_release ON device_actions (release_id, status);

-- Everything a device reported about an action, kept as sent (details capped in size).
CREATE TABLE IF NOT EXISTS device_action_feedback (
    id           bigserial PRIMARY KEY,
    action_id    integer NOT NULL REFERENCES device_actions(id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('deployment', 'cancel')),
    execution    text NOT NULL,
    finished     text NOT NULL,
    code         integer,
    progress     jsonb,
    details      text[] NOT NULL DEFAULT '{}',
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS device_action_feedback_action ON device_action_feedback (action_id, id);

-- Everything a DDI poll needs about each of a project's devices, by serial (unknown serials are
-- absent): one round trip for a batch of first polls. A function so that its plan is made once per
-- connection: as a plain statement it was planned again on every call (~0.25 ms, longer than it
-- runs), because unnest's guessed row count makes a reusable plan look ten times dearer. One index
-- lookup per serial: LIMIT keeps the planner from flattening the lateral subquery into a join that,
-- under a reusable plan, scans the project's devices. (CREATE OR REPLACE cannot change the columns it
-- returns: a change there needs a new name, so that running gateways keep the old one.)
CREATE OR REPLACE FUNCTION ddi_device_states(p_project bigint, p_serials text[])
RETURNS TABLE (serial text, id bigint, hardware_version text, ddi_software_type text, ddi_token_hash text,
               ddi_config_requested boolean, versions json, open_actions json, installed json, blocked bigint[])
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  SELECT u.serial, s.* FROM unnest(p_serials) AS u(serial) CROSS JOIN LATERAL (
    SELECT d.id, d.hardware_version, d.ddi_software_type, d.ddi_token_hash, d.ddi_config_requested,
           coalesce((SELECT json_object_agg(sw.software_type, sw.version) FROM device_software sw
                     WHERE sw.device_id = d.id), '{}') AS versions,
           coalesce((SELECT json_agg(json_build_object(
                         'id', a.id, 'release_id', a.release_id, 'payload_id', a.payload_id,
                         'software_type', a.software_type, 'version', a.version, 'status', a.status,
                         'cancel_rejected', a.cancel_rejected, 'retrieved', a.retrieved_at IS NOT NULL))
                     FROM device_actions a WHERE a.device_id = d.id AND a.status IN ('open', 'canceling')),
                    '[]') AS open_actions,
           coalesce((SELECT json_agg(json_build_object('id', i.id, 'software_type', i.software_type,
                                                       'payload_id', i.payload_id))
                     FROM (SELECT DISTINCT ON (da.software_type) da.id, da.software_type, da.payload_id
                           FROM device_actions da
                           WHERE da.device_id = d.id AND da.status = 'succeeded'
                           ORDER BY da.software_type, da.id DESC) i), '[]') AS installed,
           coalesce((SELECT array_agg(DISTINCT f.release_id) FROM device_actions f
                     WHERE f.device_id = d.id AND f.status = 'failed' AND f.retried_at IS NULL
                       AND f.release_id IS NOT NULL), '{}') AS blocked
    FROM devices d WHERE d.project_id = p_project AND d.serial = u.serial
    LIMIT 1) s;
END
$fn$;

-- Web dashboard sessions ----------------------------------------------------------------------
-- The cookie holds a random session id; only its sha256 is stored. A session belongs to an org
-- token or a user and is re-checked on every request (a revoked token ends its sessions).
CREATE TABLE IF NOT EXISTS ui_sessions (
    id_hash     text PRIMARY KEY,
    org_id      bigint NOT NULL REFERENCES organizations(id),
    token_id    bigint REFERENCES api_tokens(id) ON DELETE CASCADE,
    user_id     bigint REFERENCES users(id) ON DELETE CASCADE,
    csrf        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    CHECK ((token_id IS NULL) <> (user_id IS NULL))
);
CREATE INDEX IF NOT EXISTS ui_sessions_expiry ON ui_sessions (expires_at);
