"""What each gateway process loads into its in-memory mirror."""
from __future__ import annotations

from typing import Any

import asyncpg


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
            "p.poll_limit_per_minute, p.ddi_gateway_token, o.slug AS org_slug, k.seed AS signing_seed "
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


async def load_cohort_exceptions(conn, project_id: int, cohort_id: int) -> list[asyncpg.Record]:
    """The mirrored devices of one cohort (see load_device_exceptions)."""
    return await conn.fetch(
        f"SELECT {_DEVICE_EXCEPTION_COLS} FROM devices d WHERE d.project_id = $1 AND d.cohort_id = $2 AND ("
        "  d.staged OR d.release_override_id IS NOT NULL OR NOT (SELECT is_default FROM cohorts WHERE id = $2))",
        project_id, cohort_id)
