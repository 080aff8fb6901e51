"""Who a staged activation stages (migration 0007): the draws, the counts, manual staging.

A device's state for a staged activation `a` is its row in staged_devices when it has one, else
the newcomer rule: `stage_hash(a.stage_salt, serial) < a.stage_threshold` (NULL threshold: not
staged). Draws walk the cohort in the activation's hash order (domain/staging.py)."""
from __future__ import annotations

import asyncpg

# the state of device d for activation a (joined as sd: its row, if any)
STATE = "coalesce(sd.staged, a.stage_threshold IS NOT NULL AND stage_hash(a.stage_salt, d.serial) < a.stage_threshold)"

# whether device d has taken activation a's release (r): reported its version since the
# activation, runs it now, or sent DDI feedback on an action for it
TAKEN = """(EXISTS (SELECT 1 FROM device_software s WHERE s.device_id = d.id AND s.software_type = r.software_type
                   AND s.version = r.version)
  OR EXISTS (SELECT 1 FROM device_version_history h WHERE h.device_id = d.id AND h.software_type = r.software_type
             AND h.version = r.version AND h.seen_at >= a.created_at)
  OR EXISTS (SELECT 1 FROM device_actions x WHERE x.device_id = d.id AND x.release_id = a.release_id
             AND (x.status IN ('succeeded', 'failed')
                  OR EXISTS (SELECT 1 FROM device_action_feedback f WHERE f.action_id = x.id))))"""

# the cohort's devices with their state for activation $1
_DEVICES = """
  FROM activations a JOIN releases r ON r.id = a.release_id
  JOIN devices d ON d.cohort_id = a.cohort_id
  LEFT JOIN staged_devices sd ON sd.activation_id = a.id AND sd.device_id = d.id
  WHERE a.id = $1
"""


async def staged_activation(conn, cohort_id: int, software_type: str) -> asyncpg.Record | None:
    """The cohort's active staged activation for a software type, if any (at most one)."""
    return await conn.fetchrow(
        "SELECT a.*, r.version FROM activations a JOIN releases r ON r.id = a.release_id "
        "WHERE a.cohort_id = $1 AND a.software_type = $2 AND a.status = 'active' AND a.type = 'staged_rollout'",
        cohort_id, software_type)


async def staged_activations(conn, cohort_id: int) -> list[asyncpg.Record]:
    """Every active staged activation of a cohort (one per software type)."""
    return await conn.fetch(
        "SELECT a.*, r.version FROM activations a JOIN releases r ON r.id = a.release_id "
        "WHERE a.cohort_id = $1 AND a.status = 'active' AND a.type = 'staged_rollout' ORDER BY a.software_type",
        cohort_id)


async def counts(conn, activation_id: int) -> tuple[int, int, int]:
    """(devices in the cohort, staged, staged that took the release) for an activation."""
    row = await conn.fetchrow(
        f"SELECT count(*) AS n, count(*) FILTER (WHERE {STATE}) AS staged, "
        f"count(*) FILTER (WHERE {STATE} AND {TAKEN}) AS takers" + _DEVICES, activation_id)
    return row["n"], row["staged"], row["takers"]


async def materialize(conn, activation_id: int) -> None:
    """Give every device the newcomer rule stages now a row of its own, so that a change of the
    rule (a new threshold) moves none of them by itself."""
    await conn.execute(
        "INSERT INTO staged_devices (activation_id, device_id, staged) SELECT a.id, d.id, true" + _DEVICES +
        f" AND sd.device_id IS NULL AND {STATE}", activation_id)


async def stage_takers(conn, activation_id: int) -> int:
    """Stage every device of the cohort that has taken the release already (a normal activation
    becoming staged must not take it back from them)."""
    return int((await conn.execute(
        "INSERT INTO staged_devices (activation_id, device_id, staged) SELECT a.id, d.id, true" + _DEVICES +
        f" AND {TAKEN} ON CONFLICT (activation_id, device_id) DO UPDATE SET staged = true",
        activation_id)).split()[-1])


async def widen(conn, activation_id: int, k: int) -> None:
    """Stage the next `k` unstaged devices in the activation's hash order."""
    await _move(conn, activation_id, k, staged=True)


async def narrow(conn, activation_id: int, k: int) -> None:
    """Take back the last `k` staged devices in hash order that have not taken the release."""
    await _move(conn, activation_id, k, staged=False)


async def _move(conn, activation_id: int, k: int, *, staged: bool) -> None:
    """Set `k` devices whose state is not `staged` to it: the first ones of the hash order when
    staging, the last ones that have not taken the release when unstaging."""
    if k <= 0:
        return
    pick = (f"NOT {STATE} ORDER BY stage_hash(a.stage_salt, d.serial), d.id" if staged else
            f"{STATE} AND NOT {TAKEN} ORDER BY stage_hash(a.stage_salt, d.serial) DESC, d.id DESC")
    await conn.execute(
        f"INSERT INTO staged_devices (activation_id, device_id, staged) SELECT * FROM ("
        f"SELECT a.id, d.id, $3::bool {_DEVICES} AND {pick} LIMIT $2) pick "
        "ON CONFLICT (activation_id, device_id) DO UPDATE SET staged = $3", activation_id, k, staged)


async def set_rule(conn, activation_id: int, threshold: int | None) -> None:
    """Set the newcomer threshold; devices of the cohort that are not staged but that it would
    stage get a row saying so (they were there when the draw was made), and rows the rule now
    agrees with are dropped."""
    await conn.execute("UPDATE activations SET stage_threshold = $2 WHERE id = $1", activation_id, threshold)
    if threshold is not None:
        await conn.execute(
            "INSERT INTO staged_devices (activation_id, device_id, staged) SELECT a.id, d.id, false" + _DEVICES +
            " AND sd.device_id IS NULL AND stage_hash(a.stage_salt, d.serial) < a.stage_threshold", activation_id)
    await conn.execute(
        "DELETE FROM staged_devices sd USING activations a, devices d WHERE sd.activation_id = $1 "
        "AND a.id = sd.activation_id AND d.id = sd.device_id AND sd.staged = "
        "(a.stage_threshold IS NOT NULL AND stage_hash(a.stage_salt, d.serial) < a.stage_threshold)", activation_id)


async def clear(conn, activation_id: int) -> None:
    """Forget an activation's draw (it becomes staged again from scratch)."""
    await conn.execute("DELETE FROM staged_devices WHERE activation_id = $1", activation_id)


async def stage_serials(conn, activation_id: int, project_id: int, serials: list[str], staged: bool) -> list[str]:
    """Stage or unstage named devices of the activation's cohort; returns the serials found."""
    rows = await conn.fetch(
        "WITH ins AS (INSERT INTO staged_devices (activation_id, device_id, staged) "
        "  SELECT a.id, d.id, $4 FROM activations a JOIN devices d ON d.cohort_id = a.cohort_id "
        "  WHERE a.id = $1 AND d.project_id = $2 AND d.serial = ANY($3::text[]) "
        "  ON CONFLICT (activation_id, device_id) DO UPDATE SET staged = $4 RETURNING device_id) "
        "SELECT d.serial FROM ins JOIN devices d ON d.id = ins.device_id",
        activation_id, project_id, serials, staged)
    return [r["serial"] for r in rows]


async def stage_filtered(conn, activation_id: int, *, staged: bool, current_version: str | None,
                         hardware_version: str | None, limit: int | None, order: str) -> int:
    """Stage (or unstage) up to `limit` devices of the cohort not in that state yet, matching the
    filters (current version of the activation's software type, hardware version), most recently
    seen first (`last_seen`) or at random (`random`); returns how many changed."""
    order_by = {"last_seen": "d.last_seen DESC NULLS LAST, d.id", "random": "random()"}[order]
    return await conn.fetchval(
        "WITH pick AS (SELECT a.id AS aid, d.id AS did" + _DEVICES +
        f" AND {STATE} <> $2 AND ($3::text IS NULL OR d.hardware_version = $3)"
        " AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM device_software s WHERE s.device_id = d.id"
        "   AND s.software_type = a.software_type AND s.version = $4))"
        f" ORDER BY {order_by} LIMIT $5), "
        "ins AS (INSERT INTO staged_devices (activation_id, device_id, staged) SELECT aid, did, $2 FROM pick "
        "  ON CONFLICT (activation_id, device_id) DO UPDATE SET staged = $2 RETURNING 1) "
        "SELECT count(*) FROM ins", activation_id, staged, hardware_version, current_version, limit)


async def forget_device(conn, device_id: int) -> None:
    """A device leaving its cohort leaves that cohort's draws (in its new one it is a newcomer)."""
    await conn.execute("DELETE FROM staged_devices WHERE device_id = $1", device_id)


async def active_counts(conn, project_id: int) -> list[asyncpg.Record]:
    """Per active staged activation of a project: id, cohort, software type, configured percent,
    devices in the cohort and staged devices."""
    return await conn.fetch(
        f"""SELECT a.id, a.cohort_id, a.software_type, a.rollout_percent, count(d.id) AS devices,
                   count(d.id) FILTER (WHERE {STATE}) AS staged
            FROM activations a
            LEFT JOIN devices d ON d.cohort_id = a.cohort_id
            LEFT JOIN staged_devices sd ON sd.activation_id = a.id AND sd.device_id = d.id
            WHERE a.project_id = $1 AND a.status = 'active' AND a.type = 'staged_rollout'
            GROUP BY a.id""", project_id)
