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
    """Everything the poll path needs for one project, except per-device exceptions, read in one
    snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await project_state(conn, project_id)


async def project_state(conn, project_id: int) -> dict[str, Any]:
    """What `load_project_state` reads, in the caller's transaction (a preview reads the state a
    change would leave, before rolling it back)."""
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
    # staged activations that stage newcomers by hash (store/staging.py)
    rules = await conn.fetch(
        "SELECT cohort_id, software_type, stage_salt, stage_threshold FROM activations WHERE project_id = $1 "
        "AND status = 'active' AND type = 'staged_rollout' AND stage_threshold IS NOT NULL", project_id)
    return {"project": project, "cohorts": cohorts, "hardware_versions": [r["name"] for r in hw],
            "software_types": [r["name"] for r in sw], "releases": releases, "payloads": payloads,
            "tables": tables, "stage_rules": rules}


# a device's explicit staged states, per software type of its cohort's active staged activations:
# `staged` lists those it is staged for, `unstaged` those it is explicitly left out of
_STAGED_ROWS = """FROM staged_devices sd JOIN activations a ON a.id = sd.activation_id
    WHERE sd.device_id = d.id AND a.status = 'active' AND a.type = 'staged_rollout'"""
_DEVICE_EXCEPTION_COLS = f"""d.serial, d.hardware_version, d.cohort_id, d.release_override_id,
    ARRAY(SELECT a.software_type {_STAGED_ROWS} AND sd.staged) AS staged,
    ARRAY(SELECT a.software_type {_STAGED_ROWS} AND NOT sd.staged) AS unstaged"""
# devices with a row for an active staged activation of the project ($1)
_WITH_ROWS = """d.id IN (SELECT sd.device_id FROM staged_devices sd JOIN activations a ON a.id = sd.activation_id
    WHERE a.project_id = $1 AND a.status = 'active' AND a.type = 'staged_rollout')"""


async def load_device_exceptions(conn, project_id: int) -> list[asyncpg.Record]:
    """Devices whose answer differs from their cohort default: not in the default cohort,
    staged (or explicitly not, see store/staging.py), or overridden. Memory grows with these,
    not with the fleet."""
    return await conn.fetch(
        f"SELECT {_DEVICE_EXCEPTION_COLS} FROM devices d WHERE d.project_id = $1 AND ("
        f"  {_WITH_ROWS} OR d.release_override_id IS NOT NULL OR d.cohort_id = ANY("
        "    SELECT id FROM cohorts WHERE project_id = $1 AND NOT is_default))", project_id)


async def load_device(conn, project_id: int, serial: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_DEVICE_EXCEPTION_COLS} FROM devices d WHERE d.project_id = $1 AND d.serial = $2",
        project_id, serial)


async def load_cohort_exceptions(conn, project_id: int, cohort_id: int) -> list[asyncpg.Record]:
    """The mirrored devices of one cohort (see load_device_exceptions)."""
    return await conn.fetch(
        f"SELECT {_DEVICE_EXCEPTION_COLS} FROM devices d WHERE d.project_id = $1 AND d.cohort_id = $2 AND ("
        f"  {_WITH_ROWS} OR d.release_override_id IS NOT NULL OR NOT (SELECT is_default FROM cohorts WHERE id = $2))",
        project_id, cohort_id)
