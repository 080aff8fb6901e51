"""The SQL layer: every statement the gateway runs lives here.

Functions take an asyncpg connection (or pool) so that callers decide transaction scope; the
management writes that can change an answer call `rebuild_resolution` inside their transaction.
"""
from __future__ import annotations

import operator
import secrets
from pathlib import Path
from typing import Any, Iterable

import asyncpg
import orjson

from . import resolution
from .tokens import hash_token

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema.sql"
NOTIFY_CHANNEL = "ota_gateway"
_LOCK_NS = 0x07A  # advisory-lock namespace for per-project resolution rebuilds


async def init_connection(conn: asyncpg.Connection) -> None:
    """Decode json/jsonb with orjson on every pooled connection."""
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads,
                                  schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's reset query (RESET ALL, UNLISTEN *, CLOSE ALL, advisory
    unlock): one round trip per release, and pooled connections never hold session state (SET
    LOCAL, transaction-scoped advisory locks, cursors inside transactions; LISTEN is on the
    mirror's own connection). asyncpg still rolls back a transaction left open."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    # command_timeout: a write must fail (503) rather than hang when the database stalls
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=init_connection,
                                     reset=_keep_session, command_timeout=30, timeout=5)


async def apply_schema(conn: asyncpg.Connection) -> None:
    """Create every table idempotently; serialised so concurrent starts don't race."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", _LOCK_NS)
        await conn.execute(SCHEMA_PATH.read_text())


async def server_secret(conn: asyncpg.Connection, key: str) -> str:
    """A random server-wide secret, created once and shared by every process."""
    await conn.execute("INSERT INTO server_settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                       key, secrets.token_hex(32))
    return await conn.fetchval("SELECT value FROM server_settings WHERE key = $1", key)


# -- bootstrap ---------------------------------------------------------------------------------

async def ensure_org(conn, slug: str) -> int:
    await conn.execute("INSERT INTO organizations (slug, name) VALUES ($1, $1) ON CONFLICT (slug) DO NOTHING", slug)
    return await conn.fetchval("SELECT id FROM organizations WHERE slug = $1", slug)


async def ensure_project(conn, org_id: int, slug: str) -> int:
    """Project with its default cohort; an existing project of another org is an error."""
    row = await conn.fetchrow("SELECT id, org_id FROM projects WHERE slug = $1", slug)
    if row is None:
        pid = await conn.fetchval("INSERT INTO projects (org_id, slug, name) VALUES ($1, $2, $2) RETURNING id",
                                  org_id, slug)
    elif row["org_id"] != org_id:
        raise ValueError(f"project slug {slug!r} already belongs to another organization")
    else:
        pid = row["id"]
    await conn.execute(
        "INSERT INTO cohorts (project_id, slug, name, is_default) VALUES ($1, 'default', 'Default', true) "
        "ON CONFLICT DO NOTHING", pid)
    return pid


async def ensure_org_token(conn, org_id: int, token: str, *, role: str = "manager", name: str = "bootstrap") -> None:
    await conn.execute(
        "INSERT INTO api_tokens (org_id, name, secret_hash, role, can_activate_protected) "
        "VALUES ($1, $2, $3, $4, true) ON CONFLICT (secret_hash) DO NOTHING",
        org_id, name, hash_token(token), role)


async def ensure_project_key(conn, project_id: int, key: str, *, name: str = "bootstrap") -> None:
    await conn.execute(
        "INSERT INTO project_keys (project_id, name, secret_hash) VALUES ($1, $2, $3) "
        "ON CONFLICT (secret_hash) DO NOTHING", project_id, name, hash_token(key))
    await notify(conn, "keys")


async def ensure_user(conn, org_id: int, email: str, secret_hash: str, role: str) -> None:
    await conn.execute(
        "INSERT INTO users (org_id, email, secret_hash, role) VALUES ($1, $2, $3, $4) ON CONFLICT (email) DO NOTHING",
        org_id, email, secret_hash, role)


async def notify(conn, message: str) -> None:
    """Tell every gateway process what to reload; delivered at commit."""
    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, message)


# -- authentication (management) ------------------------------------------------------------------

async def token_identity(conn, token: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT t.id, t.name, t.role, t.can_activate_protected, o.id AS org_id, o.slug AS org_slug "
        "FROM api_tokens t JOIN organizations o ON o.id = t.org_id "
        "WHERE t.secret_hash = $1 AND t.revoked_at IS NULL", hash_token(token))


async def user_identity(conn, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT u.id, u.email, u.secret_hash, u.role, o.id AS org_id, o.slug AS org_slug "
        "FROM users u JOIN organizations o ON o.id = u.org_id WHERE u.email = $1", email)


_PROJECT_SETTINGS = {"strict_semver", "ddi_software_type", "ddi_hardware_version", "poll_limit_per_minute"}


async def update_project(conn, project_id: int, changes: dict) -> None:
    for key, value in changes.items():
        assert key in _PROJECT_SETTINGS  # column names are never taken from input
        await conn.execute(f"UPDATE projects SET {key} = $2 WHERE id = $1", project_id, value)


async def project_by_slugs(conn, org_slug: str, project_slug: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT p.*, o.slug AS org_slug FROM projects p JOIN organizations o ON o.id = p.org_id "
        "WHERE o.slug = $1 AND p.slug = $2", org_slug, project_slug)


# -- mirror loading ------------------------------------------------------------------------------

async def load_keys(conn) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT secret_hash, project_id, cohort_override_id FROM project_keys WHERE revoked_at IS NULL")


async def load_projects(conn) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT p.id, p.slug, p.resolution_generation, p.ddi_software_type, p.ddi_hardware_version, "
        "o.slug AS org_slug FROM projects p JOIN organizations o ON o.id = p.org_id")


async def load_project_state(conn, project_id: int) -> dict[str, Any]:
    """Everything the poll path needs for one project, except per-device exceptions."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        project = await conn.fetchrow(
            "SELECT p.id, p.slug, p.resolution_generation, p.ddi_software_type, p.ddi_hardware_version, "
            "p.poll_limit_per_minute, o.slug AS org_slug, k.seed AS signing_seed "
            "FROM projects p JOIN organizations o ON o.id = p.org_id "
            "LEFT JOIN project_signing_keys k ON k.project_id = p.id "
            "WHERE p.id = $1",
            project_id)
        cohorts = await conn.fetch("SELECT * FROM cohorts WHERE project_id = $1", project_id)
        hw = await conn.fetch("SELECT name FROM hardware_versions WHERE project_id = $1", project_id)
        sw = await conn.fetch("SELECT name FROM software_types WHERE project_id = $1", project_id)
        releases = await conn.fetch("SELECT * FROM releases WHERE project_id = $1", project_id)
        payloads = await conn.fetch(
            "SELECT pl.* FROM payloads pl JOIN releases r ON r.id = pl.release_id WHERE r.project_id = $1",
            project_id)
        tables = await conn.fetch(
            "SELECT cohort_id, software_type, hardware_version, staged, decision FROM resolution_cache "
            "WHERE project_id = $1", project_id)
    return {"project": project, "cohorts": cohorts, "hardware_versions": [r["name"] for r in hw],
            "software_types": [r["name"] for r in sw], "releases": releases, "payloads": payloads,
            "tables": tables}


_DEVICE_EXCEPTION_COLS = "serial, hardware_version, cohort_id, staged, release_override_id"


async def load_device_exceptions(conn, project_id: int) -> list[asyncpg.Record]:
    """Devices whose answer differs from their cohort default: not in the default cohort,
    staged, or overridden. Memory grows with these, not with the fleet."""
    return await conn.fetch(
        f"SELECT {_DEVICE_EXCEPTION_COLS} FROM devices d WHERE d.project_id = $1 AND ("
        "  d.staged OR d.release_override_id IS NOT NULL OR d.cohort_id = ANY("
        "    SELECT id FROM cohorts WHERE project_id = $1 AND NOT is_default))", project_id)


async def load_device(conn, project_id: int, serial: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_DEVICE_EXCEPTION_COLS} FROM devices WHERE project_id = $1 AND serial = $2", project_id, serial)


# -- check-ins (write-behind) ------------------------------------------------------------------

async def flush_checkins(conn, rows: list[tuple], *, last_seen_granularity: float) -> None:
    """Write a batch of check-ins: (project_id, serial, hardware_version, software_type,
    versions, protocol, seen_at as Unix seconds), at most one per (project, serial, software type),
    where `versions` are the versions the device reported since the last flush, oldest first.
    New serials join their project's default cohort; last_seen is only rewritten when older than
    `last_seen_granularity` seconds (and never moved back); every version change is appended to
    the history, the last version becomes current. One statement, whatever the batch size."""
    # columns, not rows: the encoding of each array element is what blocks the event loop here
    pids: list[int] = []
    serials: list[str] = []
    hws: list[str | None] = []
    seens: list[float] = []
    dis: list[int] = []
    sws: list[str] = []
    vers: list[str] = []
    prevs: list[str | None] = []
    lasts: list[bool] = []
    protos: list[str] = []
    device = None
    # a fixed row order keeps concurrent flushes from several workers from deadlocking; it also
    # puts a device's rows (one per software type) next to each other
    for pid, serial, hw, sw, versions, proto, seen in sorted(rows, key=_DEVICE_ORDER):
        if device != (pid, serial):
            device = (pid, serial)
            pids.append(pid)
            serials.append(serial)
            hws.append(hw)
            seens.append(seen)
        else:
            hws[-1] = hws[-1] or hw
            seens[-1] = max(seens[-1], seen)
        if versions:
            # one row per reported version, with the version before it in this batch, if any
            i, prev, last = len(pids), None, len(versions) - 1
            for n, v in enumerate(versions):
                dis.append(i)  # 1-based, like WITH ORDINALITY
                sws.append(sw)
                vers.append(v)
                prevs.append(prev)
                lasts.append(n == last)
                protos.append(proto)
                prev = v
    async with conn.transaction():
        # A batch is a small slice of a large fleet: every row is found by index (a guessed row count
        # must not turn that into a scan of the whole table), sorts run in memory, and compiling
        # the plan (which those guesses make look worthwhile) never pays off.
        await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL work_mem = '64MB'; SET LOCAL jit = off")
        await conn.execute(_FLUSH_CHECKINS, pids, serials, hws, seens, last_seen_granularity,
                           dis, sws, vers, prevs, lasts, protos)


_DEVICE_ORDER = operator.itemgetter(0, 1)

# Each device and each current version is looked up once (LIMIT 1 keeps the planner from turning
# a lookup into a scan of the whole table); what the lookup found decides the rest. A device seen
# recently is neither locked nor rewritten (ON CONFLICT would lock every row it meets). Version
# rows find their device id by its position in the batch, in an array: a join there would be
# planned from unnest's guessed row counts. A device or software row another worker inserted
# after this statement's snapshot is caught by ON CONFLICT.
_FLUSH_CHECKINS = """
WITH t AS (
  SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[]) WITH ORDINALITY AS t(pid, serial, hw, seen, i)
), f AS MATERIALIZED (
  SELECT t.i, t.pid, t.serial, t.hw, to_timestamp(t.seen) AS seen, d.id, d.last_seen, d.hardware_version AS db_hw
  FROM t LEFT JOIN LATERAL (
    SELECT dv.id, dv.last_seen, dv.hardware_version FROM devices dv
    WHERE dv.project_id = t.pid AND dv.serial = t.serial LIMIT 1
  ) d ON true
), upd AS (
  UPDATE devices d SET last_seen = greatest(d.last_seen, f.seen), hardware_version = coalesce(d.hardware_version, f.hw)
  FROM f
  WHERE d.id = f.id AND (f.last_seen IS NULL OR (f.db_hw IS NULL AND f.hw IS NOT NULL)
                         OR f.last_seen < f.seen - make_interval(secs => $5))
), ins AS (
  INSERT INTO devices (project_id, serial, hardware_version, cohort_id, last_seen)
  SELECT f.pid, f.serial, f.hw, c.id, f.seen
  FROM f JOIN cohorts c ON c.project_id = f.pid AND c.is_default
  WHERE f.id IS NULL
  ORDER BY f.pid, f.serial
  ON CONFLICT (project_id, serial) DO UPDATE
    SET last_seen = greatest(devices.last_seen, EXCLUDED.last_seen),
        hardware_version = coalesce(devices.hardware_version, EXCLUDED.hardware_version)
  RETURNING id, project_id, serial
), ids AS MATERIALIZED (
  SELECT array_agg(coalesce(f.id, n.id) ORDER BY f.i) AS a
  FROM f LEFT JOIN ins n ON f.id IS NULL AND n.project_id = f.pid AND n.serial = f.serial
), v AS (
  SELECT (SELECT a FROM ids)[v.di] AS device_id, v.*
  FROM unnest($6::int[], $7::text[], $8::text[], $9::text[], $10::bool[], $11::text[])
       WITH ORDINALITY AS v(di, sw, version, prev, last, protocol, n)
), changes AS MATERIALIZED (
  SELECT v.device_id, v.sw, v.version, coalesce(v.prev, s.version) AS previous, v.last, v.protocol,
         to_timestamp(($4::float8[])[v.di]) AS seen, v.n, s.version IS NOT NULL AS stored
  FROM v LEFT JOIN LATERAL (
    SELECT s.version FROM device_software s WHERE s.device_id = v.device_id AND s.software_type = v.sw LIMIT 1
  ) s ON true
  WHERE v.device_id IS NOT NULL AND (v.prev IS NOT NULL OR s.version IS DISTINCT FROM v.version)
), hist AS (
  INSERT INTO device_version_history (device_id, software_type, version, previous_version, protocol, seen_at)
  SELECT device_id, sw, version, previous, protocol, seen FROM changes ORDER BY n
), cur AS (
  UPDATE device_software s SET version = c.version, updated_at = c.seen
  FROM changes c
  WHERE c.last AND c.stored AND s.device_id = c.device_id AND s.software_type = c.sw
)
INSERT INTO device_software (device_id, software_type, version, updated_at)
SELECT device_id, sw, version, seen FROM changes WHERE last AND NOT stored
ORDER BY device_id, sw
ON CONFLICT (device_id, software_type) DO UPDATE SET version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
"""


# a device that never reported a version checks in without one, under any of its project's
# software types: it is listed under each of them with version NULL
_RECENT_CHECKINS = """
FROM devices d
LEFT JOIN device_software s ON s.device_id = d.id
LEFT JOIN software_types st ON s.device_id IS NULL AND st.project_id = d.project_id
WHERE d.last_seen > now() - make_interval(secs => $1) AND coalesce(s.software_type, st.name) IS NOT NULL
"""


async def estimated_checkin_keys(conn) -> int:
    """PostgreSQL's estimate of the stored (device, software type) pairs (0 before any ANALYZE)."""
    return max(0, int(await conn.fetchval("SELECT reltuples FROM pg_class WHERE oid = 'device_software'::regclass")))


async def count_recent_checkins(conn, within_seconds: float) -> int:
    """How many (device, software type) pairs were seen within the last `within_seconds`."""
    return await conn.fetchval("SELECT count(*) " + _RECENT_CHECKINS, within_seconds)


async def recent_checkins(conn, within_seconds: float):
    """(project id, serial, software type, hardware, version, last seen as epoch seconds) of the
    devices seen within the last `within_seconds`, streamed through a cursor (the connection must
    not be in use meanwhile)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for r in conn.cursor(
                "SELECT d.project_id, d.serial, coalesce(s.software_type, st.name), d.hardware_version, s.version, "
                "extract(epoch FROM d.last_seen)::float8 " + _RECENT_CHECKINS, within_seconds, prefetch=10_000):
            yield tuple(r)


# -- resolution cache ----------------------------------------------------------------------------

async def rebuild_resolution(conn, project_id: int) -> int:
    """Recompute every decision table of a project from its active activations, replace the
    cached rows and notify the gateways. Must run inside the caller's transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_NS, project_id)
    rows = await conn.fetch(
        """
        SELECT r.id, r.software_type, r.version, r.from_version, r.must_pass_through,
               coalesce(array_agg(DISTINCT p.hardware_version) FILTER (WHERE p.id IS NOT NULL), '{}') AS hws
        FROM releases r LEFT JOIN payloads p ON p.release_id = r.id
        WHERE r.project_id = $1 AND r.id IN (SELECT release_id FROM activations WHERE status = 'active')
        GROUP BY r.id
        """, project_id)
    releases = {r["id"]: resolution.Release(
        id=r["id"], software_type=r["software_type"], version=r["version"],
        hardware_versions=frozenset(r["hws"]), from_version=r["from_version"],
        must_pass_through=r["must_pass_through"]) for r in rows}
    acts = await conn.fetch(
        "SELECT release_id, cohort_id, type FROM activations WHERE project_id = $1 AND status = 'active'",
        project_id)
    activations = [resolution.Activation(release_id=a["release_id"], cohort_id=a["cohort_id"],
                                         staged=a["type"] == "staged_rollout") for a in acts]
    cohorts = await conn.fetch("SELECT id, version_checking FROM cohorts WHERE project_id = $1", project_id)
    tables = resolution.build_tables(releases, activations, {c["id"]: c["version_checking"] for c in cohorts})
    await conn.execute("DELETE FROM resolution_cache WHERE project_id = $1", project_id)
    if tables:
        keys = list(tables)
        await conn.execute(
            "INSERT INTO resolution_cache (project_id, cohort_id, software_type, hardware_version, staged, decision) "
            "SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bool[], $6::jsonb[])",
            project_id, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [k[3] for k in keys],
            [tables[k].to_json() for k in keys])
    gen = await conn.fetchval(
        "UPDATE projects SET resolution_generation = resolution_generation + 1 WHERE id = $1 "
        "RETURNING resolution_generation", project_id)
    await notify(conn, f"project:{project_id}")
    return gen


# -- management reads/writes ----------------------------------------------------------------------

def _jsonable(rows: Iterable[asyncpg.Record]) -> list[dict]:
    return [dict(r) for r in rows]


async def cohort_by_slug(conn, project_id: int, slug: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM cohorts WHERE project_id = $1 AND slug = $2", project_id, slug)


async def cohort_by_id(conn, project_id: int, cohort_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM cohorts WHERE project_id = $1 AND id = $2", project_id, cohort_id)


async def cohorts_reached_by(conn, project_id: int, release_id: int) -> list[asyncpg.Record]:
    """The cohorts whose devices a release can reach: where it is active, and those of devices
    pinned to it by a release override (found through the devices_exceptions index)."""
    return await conn.fetch(
        "SELECT * FROM cohorts WHERE id IN (SELECT cohort_id FROM activations WHERE release_id = $2 "
        "AND status = 'active' UNION SELECT cohort_id FROM devices WHERE project_id = $1 "
        "AND release_override_id = $2) ORDER BY id", project_id, release_id)


async def guarded_cohorts(conn, project_id: int) -> list[asyncpg.Record]:
    """The cohorts of a project that are protected or require approval."""
    return await conn.fetch("SELECT * FROM cohorts WHERE project_id = $1 AND (protected OR requires_approval) "
                            "ORDER BY id", project_id)


async def list_cohorts(conn, project_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT c.*, (SELECT count(*) FROM devices d WHERE d.cohort_id = c.id) AS device_count "
        "FROM cohorts c WHERE project_id = $1 ORDER BY c.id", project_id)


async def create_cohort(conn, project_id: int, slug: str, name: str) -> asyncpg.Record | None:
    """None when the slug is taken."""
    return await conn.fetchrow(
        "INSERT INTO cohorts (project_id, slug, name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING *",
        project_id, slug, name)


async def add_hardware_version(conn, project_id: int, name: str) -> None:
    await conn.execute("INSERT INTO hardware_versions (project_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                       project_id, name)


async def add_software_type(conn, project_id: int, name: str) -> None:
    await conn.execute("INSERT INTO software_types (project_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                       project_id, name)


async def list_software_types(conn, project_id: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT name FROM software_types WHERE project_id = $1 ORDER BY name", project_id)


async def create_upload(conn, project_id: int, token: str, ttl_seconds: int) -> None:
    await conn.execute(
        "INSERT INTO uploads (project_id, token, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))",
        project_id, token, ttl_seconds)


async def get_upload(conn, token: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM uploads WHERE token = $1", token)


async def complete_upload(conn, token: str, size: int, sha256: str, md5: str, sha1: str) -> None:
    await conn.execute(
        "UPDATE uploads SET status = 'complete', size = $2, sha256 = $3, md5 = $4, sha1 = $5 WHERE token = $1",
        token, size, sha256, md5, sha1)


async def find_release(conn, project_id: int, software_type: str | None, version: str,
                       from_version: str | None) -> asyncpg.Record | None:
    """A release by identity; software_type None matches any type (deploy-release names none)."""
    return await conn.fetchrow(
        "SELECT * FROM releases WHERE project_id = $1 AND ($2::text IS NULL OR software_type = $2) "
        "AND version = $3 AND coalesce(from_version, '') = coalesce($4, '') ORDER BY id LIMIT 1",
        project_id, software_type, version, from_version)


async def find_releases(conn, project_id: int, version: str, from_version: str | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM releases WHERE project_id = $1 AND version = $2 "
        "AND coalesce(from_version, '') = coalesce($3, '') ORDER BY id", project_id, version, from_version)


async def create_release(conn, project_id: int, *, software_type: str, version: str, from_version: str | None,
                         must_pass_through: bool, revision: str, notes: str, extra_info: dict | None,
                         created_by: str) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO releases (project_id, software_type, version, from_version, must_pass_through, revision, "
        "notes, extra_info, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
        project_id, software_type, version, from_version, must_pass_through, revision, notes, extra_info,
        created_by)


async def update_release(conn, release_id: int, changes: dict) -> None:
    for key, value in changes.items():
        assert key in ("notes", "revision", "extra_info")  # column names are never taken from input
        await conn.execute(f"UPDATE releases SET {key} = $2, updated_at = now() WHERE id = $1", release_id, value)


async def touch_release(conn, release_id: int) -> None:
    await conn.execute("UPDATE releases SET updated_at = now() WHERE id = $1", release_id)


async def payload_for(conn, release_id: int, hardware_version: str, firmware_type: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM payloads WHERE release_id = $1 AND hardware_version = $2 AND firmware_type = $3",
        release_id, hardware_version, firmware_type)


async def create_payload(conn, release_id: int, *, hardware_version: str, firmware_type: str, filename: str,
                         size: int, sha256: str, md5: str, sha1: str, extra_info: dict | None) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO payloads (release_id, hardware_version, firmware_type, filename, size, sha256, md5, sha1, "
        "extra_info) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
        release_id, hardware_version, firmware_type, filename, size, sha256, md5, sha1, extra_info)


async def payload_by_id(conn, payload_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM payloads WHERE id = $1", payload_id)


async def releases_with_payloads(conn, project_id: int, *, release_id: int | None = None) -> list[dict]:
    """Releases (newest first) each with its payload list and active activation count."""
    rows = await conn.fetch(
        """
        SELECT r.*, coalesce((SELECT json_agg(p ORDER BY p.id) FROM payloads p WHERE p.release_id = r.id), '[]')
                 AS payloads,
               (SELECT count(*) FROM activations a WHERE a.release_id = r.id AND a.status = 'active')
                 AS active_activations
        FROM releases r WHERE r.project_id = $1 AND ($2::bigint IS NULL OR r.id = $2)
        ORDER BY r.created_at DESC, r.id DESC
        """, project_id, release_id)
    return _jsonable(rows)


async def active_activations_of(conn, release_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT a.id, c.slug AS cohort FROM activations a JOIN cohorts c ON c.id = a.cohort_id "
        "WHERE a.release_id = $1 AND a.status = 'active' ORDER BY a.id", release_id)


async def delete_release(conn, release_id: int) -> None:
    await conn.execute("UPDATE devices SET release_override_id = NULL WHERE release_override_id = $1", release_id)
    await conn.execute("DELETE FROM activations WHERE release_id = $1", release_id)
    await conn.execute("DELETE FROM releases WHERE id = $1", release_id)


_ACTIVATION_SELECT = """
    SELECT a.*, c.slug AS cohort_slug, c.name AS cohort_name, r.version, r.from_version, r.revision,
           r.software_type
    FROM activations a JOIN cohorts c ON c.id = a.cohort_id JOIN releases r ON r.id = a.release_id
"""


async def list_activations(conn, project_id: int, *, cohort: str | None = None, version: str | None = None,
                           from_version: str | None = None, delta: bool = False,
                           activation_id: int | None = None) -> list[asyncpg.Record]:
    return await conn.fetch(
        _ACTIVATION_SELECT +
        " WHERE a.project_id = $1 AND ($2::text IS NULL OR c.slug = $2) AND ($3::text IS NULL OR r.version = $3)"
        " AND (NOT $5 OR r.from_version IS NOT DISTINCT FROM $4) AND ($6::bigint IS NULL OR a.id = $6)"
        " ORDER BY a.created_at DESC, a.id DESC",
        project_id, cohort, version, from_version, delta, activation_id)


async def active_activation(conn, release_id: int, cohort_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM activations WHERE release_id = $1 AND cohort_id = $2 AND status = 'active'",
        release_id, cohort_id)


async def create_activation(conn, project_id: int, release_id: int, cohort_id: int, *, type_: str,
                            rollout_percent: int | None, actor: str) -> int:
    return await conn.fetchval(
        "INSERT INTO activations (project_id, release_id, cohort_id, type, rollout_percent, created_by) "
        "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        project_id, release_id, cohort_id, type_, rollout_percent, actor)


async def update_activation(conn, activation_id: int, *, type_: str, rollout_percent: int | None) -> None:
    await conn.execute("UPDATE activations SET type = $2, rollout_percent = $3 WHERE id = $1",
                       activation_id, type_, rollout_percent)


async def pull_activation(conn, activation_id: int, actor: str) -> None:
    await conn.execute(
        "UPDATE activations SET status = 'pulled', pulled_by = $2, pulled_at = now() WHERE id = $1",
        activation_id, actor)


async def stage_cohort(conn, cohort_id: int, percent: int) -> int:
    """Mark exactly round(N * percent / 100) random devices of the cohort as staged, the rest not.
    Returns the number staged."""
    total = await conn.fetchval("SELECT count(*) FROM devices WHERE cohort_id = $1", cohort_id)
    n = int(total * percent / 100 + 0.5)
    await conn.execute(
        """
        WITH pick AS (SELECT id FROM devices WHERE cohort_id = $1 ORDER BY random() LIMIT $2)
        UPDATE devices d SET staged = (d.id IN (SELECT id FROM pick))
        WHERE d.cohort_id = $1 AND d.staged IS DISTINCT FROM (d.id IN (SELECT id FROM pick))
        """, cohort_id, n)
    return n


async def device_row(conn, project_id: int, serial: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT d.*, c.slug AS cohort_slug, c.name AS cohort_name,
               coalesce((SELECT json_object_agg(s.software_type, s.version) FROM device_software s
                         WHERE s.device_id = d.id), '{}') AS versions
        FROM devices d JOIN cohorts c ON c.id = d.cohort_id
        WHERE d.project_id = $1 AND d.serial = $2
        """, project_id, serial)


async def list_devices(conn, project_id: int, *, cohort: str | None, hardware_version: str | None,
                       limit: int, offset: int, serial_prefix: str | None = None) -> tuple[int, list[asyncpg.Record]]:
    # the prefix is matched with starts_with, not LIKE, so '%' and '_' in it are literal
    where = ("d.project_id = $1 AND ($2::text IS NULL OR c.slug = $2) "
             "AND ($3::text IS NULL OR d.hardware_version = $3) "
             "AND ($4::text IS NULL OR starts_with(d.serial, $4))")
    total = await conn.fetchval(
        f"SELECT count(*) FROM devices d JOIN cohorts c ON c.id = d.cohort_id WHERE {where}",
        project_id, cohort, hardware_version, serial_prefix)
    rows = await conn.fetch(
        f"""
        SELECT d.*, c.slug AS cohort_slug, c.name AS cohort_name,
               coalesce((SELECT json_object_agg(s.software_type, s.version) FROM device_software s
                         WHERE s.device_id = d.id), '{{}}') AS versions
        FROM devices d JOIN cohorts c ON c.id = d.cohort_id WHERE {where}
        ORDER BY d.last_seen DESC NULLS LAST, d.id LIMIT $5 OFFSET $6
        """, project_id, cohort, hardware_version, serial_prefix, limit, offset)
    return total, rows


async def create_device(conn, project_id: int, serial: str, hardware_version: str, cohort_id: int) -> bool:
    """False when the serial exists."""
    row = await conn.fetchval(
        "INSERT INTO devices (project_id, serial, hardware_version, cohort_id) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT DO NOTHING RETURNING id", project_id, serial, hardware_version, cohort_id)
    return row is not None


async def move_device(conn, project_id: int, serial: str, cohort_id: int) -> None:
    await conn.execute("UPDATE devices SET cohort_id = $3, staged = false WHERE project_id = $1 AND serial = $2",
                       project_id, serial, cohort_id)


async def audit(conn, project_id: int | None, actor: str, action: str, obj: str,
                before: Any = None, after: Any = None) -> None:
    await conn.execute(
        "INSERT INTO audit_log (project_id, actor, action, object, before, after) VALUES ($1, $2, $3, $4, $5, $6)",
        project_id, actor, action, obj, before, after)


# -- activation history and approvals ------------------------------------------------------------

async def activation_event(conn, project_id: int, activation_id: int, action: str, actor: str,
                           before: Any = None, after: Any = None) -> None:
    await conn.execute(
        "INSERT INTO activation_events (project_id, activation_id, action, actor, before, after) "
        "VALUES ($1, $2, $3, $4, $5, $6)", project_id, activation_id, action, actor, before, after)


async def list_activation_events(conn, project_id: int, *, limit: int, offset: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT e.*, r.version, r.from_version, r.software_type, c.slug AS cohort_slug
        FROM activation_events e
        LEFT JOIN activations a ON a.id = e.activation_id
        LEFT JOIN releases r ON r.id = a.release_id
        LEFT JOIN cohorts c ON c.id = a.cohort_id
        WHERE e.project_id = $1 ORDER BY e.id DESC LIMIT $2 OFFSET $3
        """, project_id, limit, offset)


# -- cohorts, keys, tokens, users -----------------------------------------------------------------

_COHORT_SETTINGS = {"name", "version_checking", "ddi_polling_interval", "ddi_update_type", "protected",
                    "requires_approval"}


async def update_cohort(conn, cohort_id: int, changes: dict) -> asyncpg.Record:
    for key, value in changes.items():
        assert key in _COHORT_SETTINGS  # column names are never taken from input
        await conn.execute(f"UPDATE cohorts SET {key} = $2 WHERE id = $1", cohort_id, value)
    return await conn.fetchrow("SELECT * FROM cohorts WHERE id = $1", cohort_id)


async def list_project_keys(conn, project_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT k.id, k.name, k.created_at, k.revoked_at, c.slug AS cohort_override "
        "FROM project_keys k LEFT JOIN cohorts c ON c.id = k.cohort_override_id "
        "WHERE k.project_id = $1 ORDER BY k.id", project_id)


async def create_project_key(conn, project_id: int, name: str, secret_hash: str,
                             cohort_override_id: int | None) -> int:
    return await conn.fetchval(
        "INSERT INTO project_keys (project_id, name, secret_hash, cohort_override_id) VALUES ($1, $2, $3, $4) "
        "RETURNING id", project_id, name, secret_hash, cohort_override_id)


async def revoke_project_key(conn, project_id: int, key_id: int) -> bool:
    return await conn.fetchval(
        "UPDATE project_keys SET revoked_at = now() WHERE project_id = $1 AND id = $2 AND revoked_at IS NULL "
        "RETURNING true", project_id, key_id) or False


async def list_tokens(conn, org_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, name, role, can_activate_protected, created_at, revoked_at FROM api_tokens "
        "WHERE org_id = $1 ORDER BY id", org_id)


async def create_token(conn, org_id: int, name: str, secret_hash: str, role: str, can_activate_protected: bool) -> int:
    return await conn.fetchval(
        "INSERT INTO api_tokens (org_id, name, secret_hash, role, can_activate_protected) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING id", org_id, name, secret_hash, role, can_activate_protected)


async def revoke_token(conn, org_id: int, token_id: int) -> bool:
    return await conn.fetchval(
        "UPDATE api_tokens SET revoked_at = now() WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL "
        "RETURNING true", org_id, token_id) or False


async def list_users(conn, org_id: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT id, email, role, created_at FROM users WHERE org_id = $1 ORDER BY id", org_id)


async def create_user(conn, org_id: int, email: str, secret_hash: str, role: str) -> int | None:
    return await conn.fetchval(
        "INSERT INTO users (org_id, email, secret_hash, role) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (email) DO NOTHING RETURNING id", org_id, email, secret_hash, role)


# -- staging and overrides ------------------------------------------------------------------------

async def stage_serials(conn, project_id: int, serials: list[str], staged: bool, *, cohort_id: int) -> list[str]:
    """Set the staged flag of named devices of a cohort; returns the serials found."""
    rows = await conn.fetch(
        "UPDATE devices SET staged = $3 WHERE project_id = $1 AND serial = ANY($2::text[]) AND cohort_id = $4 "
        "RETURNING serial", project_id, serials, staged, cohort_id)
    return [r["serial"] for r in rows]


async def stage_filtered(conn, project_id: int, cohort_id: int, *, staged: bool, software_type: str | None,
                         current_version: str | None, hardware_version: str | None, limit: int | None,
                         order: str) -> int:
    """Stage (or unstage) up to `limit` devices of a cohort that are not so yet, matching the
    filters, in the given order (`last_seen` = most recently seen first, or `random`)."""
    order_sql = {"last_seen": "d.last_seen DESC NULLS LAST, d.id", "random": "random()"}[order]
    return await conn.fetchval(
        f"""
        WITH pick AS (
          SELECT d.id FROM devices d
          WHERE d.project_id = $1 AND d.cohort_id = $2 AND d.staged <> $3
            AND ($5::text IS NULL OR d.hardware_version = $5)
            AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM device_software s WHERE s.device_id = d.id
                 AND s.version = $4 AND ($6::text IS NULL OR s.software_type = $6)))
          ORDER BY {order_sql} LIMIT $7
        ), upd AS (UPDATE devices SET staged = $3 WHERE id IN (SELECT id FROM pick) RETURNING 1)
        SELECT count(*) FROM upd
        """, project_id, cohort_id, staged, current_version, hardware_version, software_type, limit)


async def cohort_staged_count(conn, cohort_id: int) -> tuple[int, int]:
    row = await conn.fetchrow("SELECT count(*) AS total, count(*) FILTER (WHERE staged) AS staged "
                              "FROM devices WHERE cohort_id = $1", cohort_id)
    return row["total"], row["staged"]


async def set_override(conn, project_id: int, serial: str, release_id: int | None) -> None:
    await conn.execute("UPDATE devices SET release_override_id = $3 WHERE project_id = $1 AND serial = $2",
                       project_id, serial, release_id)


async def load_cohort_exceptions(conn, project_id: int, cohort_id: int) -> list[asyncpg.Record]:
    """The mirrored devices of one cohort (see load_device_exceptions)."""
    return await conn.fetch(
        f"SELECT {_DEVICE_EXCEPTION_COLS} FROM devices d WHERE d.project_id = $1 AND d.cohort_id = $2 AND ("
        "  d.staged OR d.release_override_id IS NOT NULL OR NOT (SELECT is_default FROM cohorts WHERE id = $2))",
        project_id, cohort_id)


# -- insight: matrix, history, audit ---------------------------------------------------------------

async def version_groups(conn, cohort_id: int, software_type: str) -> list[asyncpg.Record]:
    """Devices of a cohort grouped by (hardware, current version, staged) — overridden devices
    are returned one by one since their answer is their own."""
    return await conn.fetch(
        """
        SELECT d.hardware_version, s.version, d.staged, d.release_override_id, count(*) AS n
        FROM devices d
        LEFT JOIN device_software s ON s.device_id = d.id AND s.software_type = $2
        WHERE d.cohort_id = $1
        GROUP BY d.hardware_version, s.version, d.staged, d.release_override_id
        """, cohort_id, software_type)


async def device_history(conn, project_id: int, serial: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT h.software_type, h.version, h.previous_version, h.protocol, h.seen_at "
        "FROM device_version_history h JOIN devices d ON d.id = h.device_id "
        "WHERE d.project_id = $1 AND d.serial = $2 ORDER BY h.id DESC LIMIT $3", project_id, serial, limit)


async def list_audit(conn, project_id: int, *, actor: str | None, action: str | None, limit: int,
                     before_id: int | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM audit_log WHERE project_id = $1 AND ($2::text IS NULL OR actor = $2) "
        "AND ($3::text IS NULL OR action LIKE $3 || '%') AND ($5::bigint IS NULL OR id < $5) "
        "ORDER BY id DESC LIMIT $4", project_id, actor, action, limit, before_id)


# -- fleet metrics ------------------------------------------------------------------------------------

async def fleet_version_counts(conn, top: int = 50) -> list[asyncpg.Record]:
    """Devices per (project, cohort, software type, current version), and staged devices. Only
    the `top` most common versions of each cohort get a series of their own; the rest add up
    under "(other)", so odd version strings can't explode the label set."""
    return await conn.fetch(
        """
        WITH g AS (
          SELECT p.slug AS project, c.slug AS cohort, s.software_type, s.version, count(*) AS n,
                 count(*) FILTER (WHERE d.staged) AS staged
          FROM device_software s JOIN devices d ON d.id = s.device_id
          JOIN cohorts c ON c.id = d.cohort_id JOIN projects p ON p.id = d.project_id
          GROUP BY p.slug, c.slug, s.software_type, s.version
        ), r AS (
          SELECT g.*, row_number() OVER (PARTITION BY project, cohort, software_type ORDER BY n DESC, version) AS rn
          FROM g
        )
        SELECT project, cohort, software_type, CASE WHEN rn <= $1 THEN version ELSE '(other)' END AS version,
               sum(n)::bigint AS n, sum(staged)::bigint AS staged
        FROM r GROUP BY 1, 2, 3, 4
        """, top)


async def fleet_staged_counts(conn) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT p.slug AS project, c.slug AS cohort, count(*) FILTER (WHERE d.staged) AS staged, count(*) AS n "
        "FROM devices d JOIN cohorts c ON c.id = d.cohort_id JOIN projects p ON p.id = d.project_id "
        "GROUP BY p.slug, c.slug")


async def fleet_action_counts(conn) -> list[asyncpg.Record]:
    """DDI actions per release and status (a rollout's progress and failures)."""
    return await conn.fetch(
        "SELECT p.slug AS project, a.software_type, a.version, a.status, count(*) AS n "
        "FROM device_actions a JOIN projects p ON p.id = a.project_id "
        "GROUP BY p.slug, a.software_type, a.version, a.status")


# -- web dashboard --------------------------------------------------------------------------------

async def list_projects(conn, org_id: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT id, slug, name FROM projects WHERE org_id = $1 ORDER BY slug", org_id)


async def create_ui_session(conn, id_hash: str, *, org_id: int, token_id: int | None, user_id: int | None,
                            csrf: str, ttl_seconds: int) -> None:
    """A dashboard session; expired ones are swept here, so the table stays small."""
    await conn.execute("DELETE FROM ui_sessions WHERE expires_at < now()")
    await conn.execute(
        "INSERT INTO ui_sessions (id_hash, org_id, token_id, user_id, csrf, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))",
        id_hash, org_id, token_id, user_id, csrf, ttl_seconds)


async def ui_session(conn, id_hash: str) -> asyncpg.Record | None:
    """A live session with its identity as of now: None when expired, or its token was revoked."""
    return await conn.fetchrow(
        """
        SELECT s.csrf, o.id AS org_id, o.slug AS org_slug,
               t.id AS token_id, t.name AS token_name, t.role AS token_role, t.can_activate_protected,
               u.email, u.role AS user_role
        FROM ui_sessions s JOIN organizations o ON o.id = s.org_id
        LEFT JOIN api_tokens t ON t.id = s.token_id AND t.revoked_at IS NULL
        LEFT JOIN users u ON u.id = s.user_id
        WHERE s.id_hash = $1 AND s.expires_at > now() AND (t.id IS NOT NULL OR u.id IS NOT NULL)
        """, id_hash)


async def delete_ui_session(conn, id_hash: str) -> None:
    await conn.execute("DELETE FROM ui_sessions WHERE id_hash = $1", id_hash)


# -- release manifest signing keys --------------------------------------------------------------------

async def signing_key(conn, project_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT public_key, created_at FROM project_signing_keys WHERE project_id = $1",
                               project_id)


async def set_signing_key(conn, project_id: int, seed: bytes, public: bytes) -> None:
    await conn.execute(
        "INSERT INTO project_signing_keys (project_id, seed, public_key) VALUES ($1, $2, $3) "
        "ON CONFLICT (project_id) DO UPDATE SET seed = EXCLUDED.seed, public_key = EXCLUDED.public_key, "
        "created_at = now()", project_id, seed, public)


async def delete_signing_key(conn, project_id: int) -> bool:
    return await conn.fetchval("DELETE FROM project_signing_keys WHERE project_id = $1 RETURNING true",
                               project_id) or False
