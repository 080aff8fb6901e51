"""Idempotent creation of the bootstrap organization, project, token, key and user."""
from __future__ import annotations

from gateway.crypto.tokens import hash_token
from gateway.domain import notify as notify_messages
from gateway.store.db import notify


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
    await notify(conn, notify_messages.keys())


async def ensure_user(conn, org_id: int, email: str, secret_hash: str, role: str) -> None:
    await conn.execute(
        "INSERT INTO users (org_id, email, secret_hash, role) VALUES ($1, $2, $3, $4) ON CONFLICT (email) DO NOTHING",
        org_id, email, secret_hash, role)
