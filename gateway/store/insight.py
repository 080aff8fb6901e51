"""The audit log, version history and matrix, and fleet-wide counts for /metrics."""
from __future__ import annotations

from typing import Any

import asyncpg


async def audit(conn, project_id: int | None, actor: str, action: str, obj: str,
                before: Any = None, after: Any = None) -> None:
    await conn.execute(
        "INSERT INTO audit_log (project_id, actor, action, object, before, after) VALUES ($1, $2, $3, $4, $5, $6)",
        project_id, actor, action, obj, before, after)


async def version_groups(conn, cohort_id: int, software_type: str) -> list[asyncpg.Record]:
    """Devices of a cohort grouped by (hardware, current version, staged) — overridden devices
    are returned one by one since their answer is their own."""
    return await conn.fetch(
        """
        SELECT d.hardware_version, s.version, d.staged, d.release_override_id, count(*) AS n
        FROM devices d
        LEFT JOIN device_software s ON s.device_id = d.id AND s.software_type = $2
        WHERE d.cohort_id = $1
        GROUP BY d.hardware_version, s.version, d.staged, d.release_override_id
        """, cohort_id, software_type)


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
        """
        WITH g AS (
          SELECT p.slug AS project, c.slug AS cohort, s.software_type, s.version, count(*) AS n,
                 count(*) FILTER (WHERE d.staged) AS staged
          FROM device_software s JOIN devices d ON d.id = s.device_id
          JOIN cohorts c ON c.id = d.cohort_id JOIN projects p ON p.id = d.project_id
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
    return await conn.fetch(
        "SELECT p.slug AS project, c.slug AS cohort, count(*) FILTER (WHERE d.staged) AS staged, count(*) AS n "
        "FROM devices d JOIN cohorts c ON c.id = d.cohort_id JOIN projects p ON p.id = d.project_id "
        "GROUP BY p.slug, c.slug")


async def fleet_action_counts(conn) -> list[asyncpg.Record]:
    """DDI actions per release and status (a rollout's progress and failures)."""
    return await conn.fetch(
        "SELECT p.slug AS project, a.software_type, a.version, a.status, count(*) AS n "
        "FROM device_actions a JOIN projects p ON p.id = a.project_id "
        "GROUP BY p.slug, a.software_type, a.version, a.status")
