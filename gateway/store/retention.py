"""Retention: claiming a periodic job's period, and pruning old rows in bounded batches
(migration 0006: the job table and the (time, id) indexes the batches walk)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# What may go of each pruned table's rows older than the cutoff, as a condition on its row `t`:
# - a version history row, unless it is the newest of its device and software type (the device's
#   known past; newest as histories are read: by seen_at, then id), found on the per-device index;
# - DDI feedback, unless its action is still open (the device may still report on it);
# - any audit entry.
_PRUNABLE = {
    "device_version_history": ("seen_at", """EXISTS (
        SELECT 1 FROM device_version_history n
        WHERE n.device_id = t.device_id AND (n.seen_at, n.id) > (t.seen_at, t.id)
          AND n.software_type = t.software_type)"""),
    "device_action_feedback": ("received_at", """NOT EXISTS (
        SELECT 1 FROM device_actions a WHERE a.id = t.action_id AND a.status IN ('open', 'canceling'))"""),
    "audit_log": ("at", "true"),
}
TABLES = tuple(_PRUNABLE)

# One batch: the next `limit` rows older than the cutoff after the last one examined (keyset on the
# (time, id) index, so the rows kept are met once per run, not by every batch), and of those the
# prunable ones deleted by their ctid. One statement, one snapshot, at most `limit` rows locked.
_BATCH = """
WITH c AS MATERIALIZED (
  SELECT t.ctid AS tid, t.{at} AS at, t.id, {prunable} AS prunable
  FROM {table} t
  WHERE t.{at} < $1 AND (t.{at}, t.id) > (coalesce($2::timestamptz, '-infinity'), $3::bigint)
  ORDER BY t.{at}, t.id
  LIMIT $4
), d AS (
  DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT tid FROM c WHERE prunable)) RETURNING 1
)
SELECT (SELECT count(*) FROM c) AS examined, (SELECT count(*) FROM d) AS deleted, c.at, c.id
FROM c ORDER BY c.at DESC, c.id DESC LIMIT 1
"""
_SQL = {table: _BATCH.format(table=table, at=at, prunable=prunable) for table, (at, prunable) in _PRUNABLE.items()}


@dataclass(frozen=True, slots=True)
class Batch:
    examined: int            # rows older than the cutoff looked at (at most the limit)
    deleted: int
    last: tuple[datetime, int]  # (time, id) of the last row examined: where the next batch starts


async def claim(conn, job: str, period: float, by: str) -> bool:
    """Claim this period of `job` for the caller: True for exactly one of all callers per period
    (a concurrent claim waits for the row and then finds it taken). The row is made on first use."""
    return await conn.fetchval(
        "INSERT INTO periodic_jobs AS j (job, last_run, last_by) VALUES ($1, now(), $3) "
        "ON CONFLICT (job) DO UPDATE SET last_run = now(), last_by = $3, finished_at = NULL "
        "WHERE j.last_run <= now() - make_interval(secs => $2) RETURNING true", job, period, by) is not None


async def finish(conn, job: str, result: dict) -> None:
    await conn.execute("UPDATE periodic_jobs SET finished_at = now(), result = $2 WHERE job = $1", job, result)


async def cutoff(conn, days: int) -> datetime:
    """The database's now, `days` ago."""
    return await conn.fetchval("SELECT now() - make_interval(days => $1)", days)


async def prune_batch(conn, table: str, before: datetime, after: tuple[datetime, int] | None,
                      limit: int) -> Batch | None:
    """Examine the next `limit` rows of `table` older than `before` after `after` ((time, id) of the
    last row the previous batch examined; None: from the oldest), delete those that may go. None
    when no row is left to examine."""
    at, id_ = after or (None, 0)
    row = await conn.fetchrow(_SQL[table], before, at, id_, limit)
    return None if row is None else Batch(row["examined"], row["deleted"], (row["at"], row["id"]))

