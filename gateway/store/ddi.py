"""All SQL of the hawkBit DDI adapter: per-device state, actions, feedback, configData.

Like `store`, functions take a connection (or pool) and leave the transaction scope to the caller.
"""
from __future__ import annotations

import asyncpg

OPEN = ("open", "canceling")

async def load_device_states(conn, project_id: int, serials: list[str]) -> dict[str, asyncpg.Record]:
    """Everything a DDI poll needs about each of these devices of one project, in one round trip,
    by serial (unknown serials are absent). The query is the function `ddi_device_states` in migrations/0001_base.sql."""
    rows = await conn.fetch("SELECT * FROM ddi_device_states($1, $2)", project_id, serials)
    return {r["serial"]: r for r in rows}


async def token_owners(conn, project_id: int, checks: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[bool, bool]]:
    """For each (serial, TargetToken hash): whether that device of the project has this token, and
    whether any device of it has: index-only probes of devices_ddi_token (migration 0003),
    never a device's state."""
    rows = await conn.fetch(
        "SELECT t.serial, t.token_hash, "
        "EXISTS (SELECT 1 FROM devices d WHERE d.project_id = $1 AND d.serial = t.serial "
        "        AND d.ddi_token_hash = t.token_hash) AS owner, "
        "EXISTS (SELECT 1 FROM devices d WHERE d.project_id = $1 AND d.ddi_token_hash = t.token_hash) AS known "
        "FROM unnest($2::text[], $3::text[]) AS t(serial, token_hash)",
        project_id, [s for s, _ in checks], [h for _, h in checks])
    return {(r["serial"], r["token_hash"]): (r["owner"], r["known"]) for r in rows}


async def ensure_device(conn, project_id: int, serial: str, hardware_version: str | None) -> int:
    """The device's id; an unknown serial joins the project's default cohort."""
    await conn.execute(
        "INSERT INTO devices (project_id, serial, hardware_version, cohort_id) "
        "SELECT $1, $2, $3, id FROM cohorts WHERE project_id = $1 AND is_default "
        "ON CONFLICT (project_id, serial) DO NOTHING", project_id, serial, hardware_version)
    return await conn.fetchval("SELECT id FROM devices WHERE project_id = $1 AND serial = $2", project_id, serial)


async def create_action(conn, project_id: int, device_id: int, *, release_id: int, payload_id: int,
                        software_type: str, version: str, from_version: str | None, reason: str) -> int | None:
    """A new open action; None when the device already has one for this software type."""
    return await conn.fetchval(
        "INSERT INTO device_actions (project_id, device_id, release_id, payload_id, software_type, version, "
        "from_version, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        "ON CONFLICT (device_id, software_type) WHERE status IN ('open', 'canceling') DO NOTHING RETURNING id",
        project_id, device_id, release_id, payload_id, software_type, version, from_version, reason)


async def mark_retrieved(conn, action_id: int) -> None:
    await conn.execute("UPDATE device_actions SET retrieved_at = coalesce(retrieved_at, now()) WHERE id = $1",
                       action_id)


async def mark_canceling(conn, action_id: int) -> None:
    await conn.execute("UPDATE device_actions SET status = 'canceling' WHERE id = $1 AND status = 'open'",
                       action_id)


_ACTION_SQL = """
SELECT a.*, d.serial, d.hardware_version AS device_hardware_version
FROM device_actions a JOIN devices d ON d.id = a.device_id
WHERE a.id = $1 AND a.project_id = $2 AND d.serial = $3
"""


async def device_action(conn, project_id: int, serial: str, action_id: int, *,
                        lock: bool = False) -> asyncpg.Record | None:
    """One action of one device (None for another device's); `lock` for a feedback transaction."""
    return await conn.fetchrow(_ACTION_SQL + (" FOR UPDATE OF a" if lock else ""), action_id, project_id, serial)


async def add_feedback(conn, action_id: int, *, kind: str, execution: str, finished: str, code: int | None,
                       progress: dict | None, details: list[str]) -> None:
    await conn.execute(
        "INSERT INTO device_action_feedback (action_id, kind, execution, finished, code, progress, details) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)", action_id, kind, execution, finished, code, progress, details)


async def set_action_status(conn, action_id: int, status: str, *, cancel_rejected: bool = False) -> None:
    """Move an action to `status`; closed states get their closing time."""
    await conn.execute(
        "UPDATE device_actions SET status = $2, cancel_rejected = cancel_rejected OR $3, "
        "closed_at = CASE WHEN $2 IN ('succeeded', 'failed', 'canceled') THEN now() END WHERE id = $1",
        action_id, status, cancel_rejected)


async def record_version(conn, device_id: int, software_type: str, version: str) -> bool:
    """Set the device's current version; a change is appended to the version history."""
    old = await conn.fetchval("SELECT version FROM device_software WHERE device_id = $1 AND software_type = $2",
                              device_id, software_type)
    if old == version:
        return False
    await conn.execute(
        "INSERT INTO device_software (device_id, software_type, version, updated_at, reported_at) "
        "VALUES ($1, $2, $3, now(), now()) "
        "ON CONFLICT (device_id, software_type) DO UPDATE SET version = EXCLUDED.version, updated_at = now(), "
        "reported_at = now()",
        device_id, software_type, version)
    await conn.execute(
        "INSERT INTO device_version_history (device_id, software_type, version, previous_version, protocol) "
        "VALUES ($1, $2, $3, $4, 'ddi')", device_id, software_type, version, old)
    return True


async def request_config(conn, device_id: int) -> None:
    """Ask the device for its configData again (after an update)."""
    await conn.execute("UPDATE devices SET ddi_config_requested = true WHERE id = $1", device_id)


async def save_config(conn, device_id: int, *, mode: str, data: dict[str, str], hardware_version: str | None,
                      software_type: str | None) -> str | None:
    """Store reported attributes (merge / replace / remove), set the hardware version only if the
    device has none (it is immutable) and the software type if reported. Returns the stored
    hardware version."""
    if mode == "remove":
        attrs = "coalesce(ddi_attributes, '{}'::jsonb) - $2::text[]"
        arg: object = list(data)
    elif mode == "replace":
        attrs, arg = "$2::jsonb", data
    else:
        attrs, arg = "coalesce(ddi_attributes, '{}'::jsonb) || $2::jsonb", data
    return await conn.fetchval(
        f"UPDATE devices SET ddi_attributes = {attrs}, ddi_config_requested = false, "
        "hardware_version = coalesce(hardware_version, $3), ddi_software_type = coalesce($4, ddi_software_type) "
        "WHERE id = $1 RETURNING hardware_version", device_id, arg, hardware_version, software_type)


async def device_messages(conn, action_id: int, limit: int) -> list[str]:
    """The newest `limit` detail messages the device sent for an action, newest first."""
    rows = await conn.fetch(
        "SELECT d.msg FROM (SELECT id, details FROM device_action_feedback WHERE action_id = $1 "
        "ORDER BY id DESC LIMIT $2) f, unnest(f.details) WITH ORDINALITY AS d(msg, n) "
        "ORDER BY f.id DESC, d.n DESC LIMIT $2", action_id, limit)
    return [r["msg"] for r in rows]


# -- management ------------------------------------------------------------------------------------

async def set_token(conn, project_id: int, serial: str, token_hash: str | None) -> bool:
    """Set (or clear, with None) a device's target token; False for an unknown device."""
    return await conn.fetchval(
        "UPDATE devices SET ddi_token_hash = $3 WHERE project_id = $1 AND serial = $2 RETURNING true",
        project_id, serial, token_hash) is not None


async def device_ddi_row(conn, project_id: int, serial: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, serial, hardware_version, ddi_software_type, ddi_attributes, ddi_config_requested, "
        "ddi_token_hash IS NOT NULL AS has_token FROM devices WHERE project_id = $1 AND serial = $2",
        project_id, serial)


async def list_actions(conn, device_id: int) -> list[asyncpg.Record]:
    """A device's actions, newest first, each with its feedback history (oldest first)."""
    return await conn.fetch(
        """
        SELECT a.*, coalesce((SELECT json_agg(json_build_object(
                   'kind', f.kind, 'execution', f.execution, 'finished', f.finished, 'code', f.code,
                   'progress', f.progress, 'details', f.details, 'received_date', f.received_at) ORDER BY f.id)
                 FROM device_action_feedback f WHERE f.action_id = a.id), '[]') AS feedback
        FROM device_actions a WHERE a.device_id = $1 ORDER BY a.id DESC
        """, device_id)


async def retry_failed(conn, device_id: int, release_id: int, actor: str) -> int:
    """Unblock a release that failed on a device; returns how many failed actions it cleared."""
    result = await conn.execute(
        "UPDATE device_actions SET retried_at = now(), retried_by = $3 "
        "WHERE device_id = $1 AND release_id = $2 AND status = 'failed' AND retried_at IS NULL",
        device_id, release_id, actor)
    return int(result.split()[-1])


async def release_stats(conn, project_id: int) -> list[asyncpg.Record]:
    """DDI action counts per release and status (failures counted per release)."""
    return await conn.fetch(
        "SELECT a.release_id, a.software_type, a.version, a.from_version, a.status, count(*) AS n "
        "FROM device_actions a WHERE a.project_id = $1 "
        "GROUP BY a.release_id, a.software_type, a.version, a.from_version, a.status "
        "ORDER BY a.release_id NULLS LAST, a.status", project_id)
