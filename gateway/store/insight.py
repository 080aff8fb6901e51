"""The audit log, version history and matrix, and fleet-wide counts for /metrics."""
from __future__ import annotations

from typing import Any

import asyncpg

from gateway.store.staging import STATE


async def audit(conn, project_id: int | None, actor: str, action: str, obj: str,
                before: Any = None, after: Any = None) -> None:
    await conn.execute(
        "INSERT INTO audit_log (project_id, actor, action, object, before, after) VALUES ($1, $2, $3, $4, $5, $6)",
        project_id, actor, action, obj, before, after)


async def version_groups(conn, cohort_id: int, software_type: str) -> list[asyncpg.Record]:
    """Devices of a cohort grouped by (hardware, current version, staged for the cohort's staged
    rollout of the software type) — overridden devices are returned one by one since their
    answer is their own."""
    return await conn.fetch(
        f"""
        SELECT d.hardware_version, s.version, coalesce({STATE}, false) AS staged, d.release_override_id,
               count(*) AS n
        FROM devices d
        LEFT JOIN device_software s ON s.device_id = d.id AND s.software_type = $2
        LEFT JOIN activations a ON a.cohort_id = d.cohort_id AND a.software_type = $2 AND a.status = 'active'
                               AND a.type = 'staged_rollout'
        LEFT JOIN staged_devices sd ON sd.activation_id = a.id AND sd.device_id = d.id
        WHERE d.cohort_id = $1
        GROUP BY 1, 2, 3, 4
        """, cohort_id, software_type)


async def project_groups(conn, project_id: int, software_types: list[str]) -> list[asyncpg.Record]:
    """Every device of the project grouped like `version_groups`, for each software type at once
    (cohort, software type, hardware, current version, staged, override, count)."""
    return await conn.fetch(
        f"""
        SELECT d.cohort_id, t.sw AS software_type, d.hardware_version, s.version,
               coalesce({STATE}, false) AS staged, d.release_override_id, count(*) AS n
        FROM devices d CROSS JOIN unnest($2::text[]) AS t(sw)
        LEFT JOIN device_software s ON s.device_id = d.id AND s.software_type = t.sw
        LEFT JOIN activations a ON a.cohort_id = d.cohort_id AND a.software_type = t.sw AND a.status = 'active'
                               AND a.type = 'staged_rollout'
        LEFT JOIN staged_devices sd ON sd.activation_id = a.id AND sd.device_id = d.id
        WHERE d.project_id = $1
        GROUP BY 1, 2, 3, 4, 5, 6
        """, project_id, software_types)


async def open_action_serials(conn, project_id: int, limit: int) -> list[str]:
    """Serials of devices with an open DDI action (what a change may cancel), at most `limit`."""
    rows = await conn.fetch(
        "SELECT DISTINCT d.serial FROM device_actions a JOIN devices d ON d.id = a.device_id "
        "WHERE a.project_id = $1 AND a.status = 'open' ORDER BY d.serial LIMIT $2", project_id, limit)
    return [r["serial"] for r in rows]


async def device_history(conn, project_id: int, serial: str, limit: int) -> list[asyncpg.Record]:
    """A device's version changes, newest first, in the order the reports were received (not the
    order their workers flushed them): the previous version is the one reported before, and a
    report that repeats it (a contested check-in, store/checkins.py) is no change."""
    return await conn.fetch(_DEVICE_HISTORY, project_id, serial, limit)


# the previous version of the oldest row kept (retention prunes older ones) is the one it stored
_DEVICE_HISTORY = """
SELECT software_type, version, previous_version, protocol, seen_at FROM (
  SELECT h.software_type, h.version, h.protocol, h.seen_at, h.id,
         coalesce(lag(h.version) OVER w, h.previous_version) AS previous_version
  FROM device_version_history h JOIN devices d ON d.id = h.device_id
  WHERE d.project_id = $1 AND d.serial = $2
  WINDOW w AS (PARTITION BY h.software_type ORDER BY h.seen_at, h.id)
) r
WHERE previous_version IS DISTINCT FROM version
ORDER BY seen_at DESC, id DESC LIMIT $3
"""


async def list_audit(conn, project_id: int, *, actor: str | None, action: str | None, limit: int,
                     before_id: int | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM audit_log WHERE project_id = $1 AND ($2::text IS NULL OR actor = $2) "
        "AND ($3::text IS NULL OR action LIKE $3 || '%') AND ($5::bigint IS NULL OR id < $5) "
        "ORDER BY id DESC LIMIT $4", project_id, actor, action, limit, before_id)


async def fleet_version_counts(conn, top: int = 50) -> list[asyncpg.Record]:
    """Devices per (project, cohort, software type, current version), and staged devices. Only
    the `top` most common versions of each cohort get a series of their own; the rest add up
    under "(other)", so odd version strings can't explode the label set."""
    return await conn.fetch(
        f"""
        WITH g AS (
          SELECT p.slug AS project, c.slug AS cohort, s.software_type, s.version, count(*) AS n,
                 count(*) FILTER (WHERE a.id IS NOT NULL AND {STATE}) AS staged
          FROM device_software s JOIN devices d ON d.id = s.device_id
          JOIN cohorts c ON c.id = d.cohort_id JOIN projects p ON p.id = d.project_id
          LEFT JOIN activations a ON a.cohort_id = d.cohort_id AND a.software_type = s.software_type
                                 AND a.status = 'active' AND a.type = 'staged_rollout'
          LEFT JOIN staged_devices sd ON sd.activation_id = a.id AND sd.device_id = d.id
          GROUP BY p.slug, c.slug, s.software_type, s.version
        ), r AS (
          SELECT g.*, row_number() OVER (PARTITION BY project, cohort, software_type ORDER BY n DESC, version) AS rn
          FROM g
        )
        SELECT project, cohort, software_type, CASE WHEN rn <= $1 THEN version ELSE '(other)' END AS version,
               sum(n)::bigint AS n, sum(staged)::bigint AS staged
        FROM r GROUP BY 1, 2, 3, 4
        """, top)


async def fleet_staged_counts(conn) -> list[asyncpg.Record]:
    """Per active staged rollout: project, cohort, software type, configured percent, devices in
    the cohort and devices actually staged."""
    return await conn.fetch(
        f"""SELECT p.slug AS project, c.slug AS cohort, a.software_type, a.rollout_percent,
                   count(d.id) AS n, count(d.id) FILTER (WHERE {STATE}) AS staged
            FROM activations a JOIN cohorts c ON c.id = a.cohort_id JOIN projects p ON p.id = a.project_id
            LEFT JOIN devices d ON d.cohort_id = a.cohort_id
            LEFT JOIN staged_devices sd ON sd.activation_id = a.id AND sd.device_id = d.id
            WHERE a.status = 'active' AND a.type = 'staged_rollout'
            GROUP BY p.slug, c.slug, a.software_type, a.rollout_percent""")


async def fleet_cohort_counts(conn) -> list[asyncpg.Record]:
    """Devices per (project, cohort)."""
    return await conn.fetch(
        "SELECT p.slug AS project, c.slug AS cohort, count(d.id) AS n FROM cohorts c "
        "JOIN projects p ON p.id = c.project_id LEFT JOIN devices d ON d.cohort_id = c.id GROUP BY p.slug, c.slug")


async def fleet_action_counts(conn) -> list[asyncpg.Record]:
    """DDI actions per release and status (a rollout's progress and failures)."""
    return await conn.fetch(
        "SELECT p.slug AS project, a.software_type, a.version, a.status, count(*) AS n "
        "FROM device_actions a JOIN projects p ON p.id = a.project_id "
        "GROUP BY p.slug, a.software_type, a.version, a.status")
