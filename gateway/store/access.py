"""Org tokens, users, project keys and dashboard sessions."""
from __future__ import annotations

import asyncpg

from gateway.crypto.tokens import hash_token


async def token_identity(conn, token: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT t.id, t.name, t.role, t.can_activate_protected, o.id AS org_id, o.slug AS org_slug "
        "FROM api_tokens t JOIN organizations o ON o.id = t.org_id "
        "WHERE t.secret_hash = $1 AND t.revoked_at IS NULL", hash_token(token))


async def user_identity(conn, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT u.id, u.email, u.secret_hash, u.role, o.id AS org_id, o.slug AS org_slug "
        "FROM users u JOIN organizations o ON o.id = u.org_id WHERE u.email = $1", email)


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
