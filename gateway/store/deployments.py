"""Activations (deployments), their history and staged rollouts."""
from __future__ import annotations

from typing import Any

import asyncpg


async def active_activations_of(conn, release_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT a.id, c.slug AS cohort FROM activations a JOIN cohorts c ON c.id = a.cohort_id "
        "WHERE a.release_id = $1 AND a.status = 'active' ORDER BY a.id", release_id)


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
                            rollout_percent: int | None, actor: str, salt: int) -> int:
    """A new activation (its software type is its release's; `salt` orders its staged draw)."""
    return await conn.fetchval(
        "INSERT INTO activations (project_id, release_id, cohort_id, type, rollout_percent, created_by, "
        "software_type, stage_salt) "
        "SELECT $1, $2, $3, $4, $5, $6, r.software_type, $7 FROM releases r WHERE r.id = $2 RETURNING id",
        project_id, release_id, cohort_id, type_, rollout_percent, actor, salt)


async def update_activation(conn, activation_id: int, *, type_: str, rollout_percent: int | None) -> None:
    await conn.execute("UPDATE activations SET type = $2, rollout_percent = $3 WHERE id = $1",
                       activation_id, type_, rollout_percent)


async def pull_activation(conn, activation_id: int, actor: str) -> None:
    await conn.execute(
        "UPDATE activations SET status = 'pulled', pulled_by = $2, pulled_at = now() WHERE id = $1",
        activation_id, actor)


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
