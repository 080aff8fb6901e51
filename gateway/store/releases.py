"""Uploads, releases and their payloads."""
from __future__ import annotations

from typing import Iterable

import asyncpg


def _jsonable(rows: Iterable[asyncpg.Record]) -> list[dict]:
    return [dict(r) for r in rows]


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


async def delete_release(conn, release_id: int) -> None:
    await conn.execute("UPDATE devices SET release_override_id = NULL WHERE release_override_id = $1", release_id)
    await conn.execute("DELETE FROM activations WHERE release_id = $1", release_id)
    await conn.execute("DELETE FROM releases WHERE id = $1", release_id)
