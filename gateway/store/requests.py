"""SQL of approval requests: a change to a cohort that requires approval, waiting for a second
identity. Activations use the typed columns; every other change stores what to carry out in
`params` (see services.protect)."""
from __future__ import annotations

import asyncpg


async def create(conn, project_id: int, *, cohort_id: int, release_id: int | None, action: str,
                 type_: str = "normal", rollout_percent: int | None = None, activation_id: int | None = None,
                 params: dict | None = None, actor: str) -> int:
    """File a pending request; returns its id."""
    return await conn.fetchval(
        "INSERT INTO activation_requests (project_id, cohort_id, release_id, action, type, rollout_percent, "
        "activation_id, params, requested_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        project_id, cohort_id, release_id, action, type_, rollout_percent, activation_id,
        params, actor)


_SELECT = """
    SELECT q.*, c.slug AS cohort_slug, r.version, r.from_version, r.software_type
    FROM activation_requests q JOIN cohorts c ON c.id = q.cohort_id LEFT JOIN releases r ON r.id = q.release_id
"""


async def list_requests(conn, project_id: int, *, status: str | None = None, request_id: int | None = None,
                        for_update: bool = False) -> list[asyncpg.Record]:
    """Requests of a project, oldest first; one by id with `request_id` (locked with `for_update`)."""
    return await conn.fetch(
        _SELECT + " WHERE q.project_id = $1 AND ($2::text IS NULL OR q.status = $2) "
        "AND ($3::bigint IS NULL OR q.id = $3) ORDER BY q.id" + (" FOR UPDATE OF q" if for_update else ""),
        project_id, status, request_id)


async def decide(conn, request_id: int, status: str, actor: str) -> None:
    """Mark a request approved or rejected by `actor`."""
    await conn.execute(
        "UPDATE activation_requests SET status = $2, decided_by = $3, decided_at = now() WHERE id = $1",
        request_id, status, actor)
