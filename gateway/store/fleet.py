"""Cohorts and devices: provisioning, moves, staging, release overrides."""
from __future__ import annotations

import asyncpg

from gateway.store.staging import STATE


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


async def device_row(conn, project_id: int, serial: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT d.*, c.slug AS cohort_slug, c.name AS cohort_name,
               coalesce((SELECT json_object_agg(s.software_type, s.version) FROM device_software s
                         WHERE s.device_id = d.id), '{}') AS versions, """ + _STAGED_TYPES + """
        FROM devices d JOIN cohorts c ON c.id = d.cohort_id
        WHERE d.project_id = $1 AND d.serial = $2
        """, project_id, serial)


# the software types whose staged rollout in the device's cohort stages it (store/staging.py)
_STAGED_TYPES = f"""ARRAY(SELECT a.software_type FROM activations a
    LEFT JOIN staged_devices sd ON sd.activation_id = a.id AND sd.device_id = d.id
    WHERE a.cohort_id = d.cohort_id AND a.status = 'active' AND a.type = 'staged_rollout' AND {STATE}
    ORDER BY 1) AS staged_types"""


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
                         WHERE s.device_id = d.id), '{{}}') AS versions, {_STAGED_TYPES}
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
    await conn.execute("UPDATE devices SET cohort_id = $3 WHERE project_id = $1 AND serial = $2",
                       project_id, serial, cohort_id)


_COHORT_SETTINGS = {"name", "version_checking", "ddi_polling_interval", "ddi_update_type", "protected",
                    "requires_approval"}


async def update_cohort(conn, cohort_id: int, changes: dict) -> asyncpg.Record:
    for key, value in changes.items():
        assert key in _COHORT_SETTINGS  # column names are never taken from input
        await conn.execute(f"UPDATE cohorts SET {key} = $2 WHERE id = $1", cohort_id, value)
    return await conn.fetchrow("SELECT * FROM cohorts WHERE id = $1", cohort_id)


async def set_override(conn, project_id: int, serial: str, release_id: int | None) -> None:
    await conn.execute("UPDATE devices SET release_override_id = $3 WHERE project_id = $1 AND serial = $2",
                       project_id, serial, release_id)
