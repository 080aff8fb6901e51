"""Uploads, releases and their payloads."""
from __future__ import annotations

from typing import Iterable

import asyncpg


def _jsonable(rows: Iterable[asyncpg.Record]) -> list[dict]:
    return [dict(r) for r in rows]


async def create_upload(conn, project_id: int, token: str, ttl_seconds: int, max_size: int | None = None) -> None:
    await conn.execute(
        "INSERT INTO uploads (project_id, token, expires_at, max_size) "
        "VALUES ($1, $2, now() + make_interval(secs => $3), $4)",
        project_id, token, ttl_seconds, max_size)


async def get_upload(conn, token: str) -> asyncpg.Record | None:
    """An upload by token. In a transaction (attaching it to a release), its row stays share-locked
    until the commit, so the cleanup of expired uploads waits and then sees the new payload."""
    return await conn.fetchrow("SELECT * FROM uploads WHERE token = $1 FOR SHARE", token)


async def claim_upload(conn, token: str) -> bool:
    """Start the one PUT of an upload: False when it is in progress or complete (or gone)."""
    return await conn.fetchval(
        "UPDATE uploads SET status = 'receiving', started_at = now() WHERE token = $1 AND status = 'pending' "
        "RETURNING true", token) is not None


async def release_upload(conn, token: str) -> None:
    """A PUT that stored nothing: the upload can be PUT again (while its URL is valid)."""
    await conn.execute(
        "UPDATE uploads SET status = 'pending', started_at = NULL WHERE token = $1 AND status = 'receiving'", token)


# (namespace, hashtext(sha256)): serialises a PUT recording the blob it stores with the cleanup
# deciding whether that blob is still referred to (db uses 0x07A)
_BLOB_LOCK_NS = 0x07B


async def lock_blob(conn, sha256: str) -> None:
    """Held until the end of the caller's transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _BLOB_LOCK_NS, sha256)


async def record_upload_blob(conn: asyncpg.Connection, token: str, sha256: str) -> bool:
    """Record the blob a PUT is about to rename into place (False: the upload is no longer being
    received, e.g. removed by the cleanup): from the commit on, the cleanup keeps that blob."""
    async with conn.transaction():
        await lock_blob(conn, sha256)
        return await conn.fetchval("UPDATE uploads SET sha256 = $2 WHERE token = $1 AND status = 'receiving' "
                                   "RETURNING true", token, sha256) is not None


async def complete_upload(conn, token: str, size: int, sha256: str, md5: str, sha1: str) -> None:
    await conn.execute(
        "UPDATE uploads SET status = 'complete', size = $2, sha256 = $3, md5 = $4, sha1 = $5 WHERE token = $1",
        token, size, sha256, md5, sha1)


# expired, not attached to a release (no payload of its project has its bytes), not named by a
# pending approval request (approving it attaches the upload), and not a PUT still running
_UNUSED = """
    u.expires_at < now() - make_interval(secs => $1)
    AND (u.status <> 'receiving' OR u.started_at < now() - interval '1 day')
    AND NOT EXISTS (SELECT 1 FROM payloads p JOIN releases r ON r.id = p.release_id
                    WHERE p.sha256 = u.sha256 AND r.project_id = u.project_id)
    AND NOT EXISTS (SELECT 1 FROM activation_requests q WHERE q.status = 'pending'
                    AND q.action = 'release.add_payload' AND q.params->>'token' = u.token)"""


async def unused_uploads(conn, grace_seconds: float, limit: int) -> list[asyncpg.Record]:
    """(id, sha256) of up to `limit` uploads expired `grace_seconds` ago and never used."""
    return await conn.fetch(f"SELECT u.id, u.sha256 FROM uploads u WHERE {_UNUSED} ORDER BY u.expires_at LIMIT $2",
                            grace_seconds, limit)


async def delete_unused_upload(conn, upload_id: int, grace_seconds: float) -> bool:
    """Delete one upload if it is still unused (False: it was used or removed meanwhile)."""
    return await conn.fetchval(f"DELETE FROM uploads u WHERE u.id = $2 AND {_UNUSED} RETURNING true",
                               grace_seconds, upload_id) is not None


async def blob_referenced(conn, sha256: str) -> bool:
    """Whether a payload (of any project) or an upload refers to the blob."""
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM payloads WHERE sha256 = $1) "
                               "OR EXISTS (SELECT 1 FROM uploads WHERE sha256 = $1)", sha256)


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
