"""The precomputed resolution cache: rebuilt inside each write that changes an answer."""
from __future__ import annotations

from gateway.domain import notify as notify_messages
from gateway.domain import resolution
from gateway.store.db import _LOCK_NS, notify


async def rebuild_resolution(conn, project_id: int) -> int:
    """Recompute every decision table of a project from its active activations, replace the
    cached rows and notify the gateways. Must run inside the caller's transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_NS, project_id)
    rows = await conn.fetch(
        """
        SELECT r.id, r.software_type, r.version, r.from_version, r.must_pass_through,
               coalesce(array_agg(DISTINCT p.hardware_version) FILTER (WHERE p.id IS NOT NULL), '{}') AS hws
        FROM releases r LEFT JOIN payloads p ON p.release_id = r.id
        WHERE r.project_id = $1 AND r.id IN (SELECT release_id FROM activations WHERE status = 'active')
        GROUP BY r.id
        """, project_id)
    releases = {r["id"]: resolution.Release(
        id=r["id"], software_type=r["software_type"], version=r["version"],
        hardware_versions=frozenset(r["hws"]), from_version=r["from_version"],
        must_pass_through=r["must_pass_through"]) for r in rows}
    acts = await conn.fetch(
        "SELECT release_id, cohort_id, type FROM activations WHERE project_id = $1 AND status = 'active'",
        project_id)
    activations = [resolution.Activation(release_id=a["release_id"], cohort_id=a["cohort_id"],
                                         staged=a["type"] == "staged_rollout") for a in acts]
    cohorts = await conn.fetch("SELECT id, version_checking FROM cohorts WHERE project_id = $1", project_id)
    tables = resolution.build_tables(releases, activations, {c["id"]: c["version_checking"] for c in cohorts})
    await conn.execute("DELETE FROM resolution_cache WHERE project_id = $1", project_id)
    if tables:
        keys = list(tables)
        await conn.execute(
            "INSERT INTO resolution_cache (project_id, cohort_id, software_type, hardware_version, staged, decision) "
            "SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bool[], $6::jsonb[])",
            project_id, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [k[3] for k in keys],
            [tables[k].to_json() for k in keys])
    gen = await conn.fetchval(
        "UPDATE projects SET resolution_generation = resolution_generation + 1 WHERE id = $1 "
        "RETURNING resolution_generation", project_id)
    await notify(conn, notify_messages.project(project_id))
    return gen
