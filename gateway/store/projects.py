"""Projects, their settings, software types, hardware versions and signing keys."""
from __future__ import annotations

import asyncpg

_PROJECT_SETTINGS = {"strict_semver", "ddi_software_type", "ddi_hardware_version", "poll_limit_per_minute",
                     "ddi_gateway_token"}


async def update_project(conn, project_id: int, changes: dict) -> None:
    for key, value in changes.items():
        assert key in _PROJECT_SETTINGS  # column names are never taken from input
        await conn.execute(f"UPDATE projects SET {key} = $2 WHERE id = $1", project_id, value)


async def project_by_slugs(conn, org_slug: str, project_slug: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT p.*, o.slug AS org_slug FROM projects p JOIN organizations o ON o.id = p.org_id "
        "WHERE o.slug = $1 AND p.slug = $2", org_slug, project_slug)


async def add_hardware_version(conn, project_id: int, name: str) -> None:
    await conn.execute("INSERT INTO hardware_versions (project_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                       project_id, name)


async def add_software_type(conn, project_id: int, name: str) -> None:
    await conn.execute("INSERT INTO software_types (project_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                       project_id, name)


async def list_software_types(conn, project_id: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT name FROM software_types WHERE project_id = $1 ORDER BY name", project_id)


async def list_projects(conn, org_id: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT id, slug, name FROM projects WHERE org_id = $1 ORDER BY slug", org_id)


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
