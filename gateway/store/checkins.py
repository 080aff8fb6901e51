"""Write-behind check-ins: the one-statement flush and the recent-device preload."""
from __future__ import annotations

import operator


async def flush_checkins(conn, rows: list[tuple], *, last_seen_granularity: float) -> None:
    """Write a batch of check-ins: (project_id, serial, hardware_version, software_type,
    versions, protocol, seen_at as Unix seconds, contested), at most one per (project, serial,
    software type), where `versions` are the versions the device reported since the last flush,
    oldest first, and a contested row's last version is written even when it is the stored one.
    New serials join their project's default cohort; last_seen is only rewritten when older than
    `last_seen_granularity` seconds (and never moved back); the hardware version is the first one
    reported (or provisioned), a different one reported later is kept beside it as
    reported_hardware_version (NULL while they agree); every version change is appended to
    the history, the last version becomes current unless a newer report is stored already (rows of
    one device flushed by several workers land in any order). One statement, whatever the batch
    size."""
    # columns, not rows: the encoding of each array element is what blocks the event loop here
    pids: list[int] = []
    serials: list[str] = []
    hws: list[str | None] = []
    seens: list[float] = []
    dis: list[int] = []
    sws: list[str] = []
    vers: list[str] = []
    prevs: list[str | None] = []
    lasts: list[bool] = []
    protos: list[str] = []
    contests: list[bool] = []
    device = None
    # a fixed row order keeps concurrent flushes from several workers from deadlocking; it also
    # puts a device's rows (one per software type) next to each other
    for pid, serial, hw, sw, versions, proto, seen, contested in sorted(rows, key=_DEVICE_ORDER):
        if device != (pid, serial):
            device = (pid, serial)
            pids.append(pid)
            serials.append(serial)
            hws.append(hw)
            seens.append(seen)
        else:
            hws[-1] = hws[-1] or hw
            seens[-1] = max(seens[-1], seen)
        if versions:
            # one row per reported version, with the version before it in this batch, if any
            i, prev, last = len(pids), None, len(versions) - 1
            for n, v in enumerate(versions):
                dis.append(i)  # 1-based, like WITH ORDINALITY
                sws.append(sw)
                vers.append(v)
                prevs.append(prev)
                lasts.append(n == last)
                contests.append(contested and n == last)
                protos.append(proto)
                prev = v
    async with conn.transaction():
        # A batch is a small slice of a large fleet: every row is found by index (a guessed row count
        # must not turn that into a scan of the whole table), sorts run in memory, and compiling
        # the plan (which those guesses make look worthwhile) never pays off.
        await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL work_mem = '64MB'; SET LOCAL jit = off")
        await conn.execute(_FLUSH_CHECKINS, pids, serials, hws, seens, last_seen_granularity,
                           dis, sws, vers, prevs, lasts, protos, contests)


_DEVICE_ORDER = operator.itemgetter(0, 1)

# Each device and each current version is looked up once (LIMIT 1 keeps the planner from turning
# a lookup into a scan of the whole table); what the lookup found decides the rest. A device seen
# recently is neither locked nor rewritten (ON CONFLICT would lock every row it meets). Version
# rows find their device id by its position in the batch, in an array: a join there would be
# planned from unnest's guessed row counts. A device or software row another worker inserted
# after this statement's snapshot is caught by ON CONFLICT.
_FLUSH_CHECKINS = """
WITH t AS (
  SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[]) WITH ORDINALITY AS t(pid, serial, hw, seen, i)
), f AS MATERIALIZED (
  SELECT t.i, t.pid, t.serial, t.hw, to_timestamp(t.seen) AS seen, d.id, d.last_seen, d.hardware_version AS db_hw,
         d.reported_hardware_version AS db_rhw
  FROM t LEFT JOIN LATERAL (
    SELECT dv.id, dv.last_seen, dv.hardware_version, dv.reported_hardware_version FROM devices dv
    WHERE dv.project_id = t.pid AND dv.serial = t.serial LIMIT 1
  ) d ON true
), upd AS (
  UPDATE devices d SET last_seen = greatest(d.last_seen, f.seen), hardware_version = coalesce(d.hardware_version, f.hw),
    reported_hardware_version = CASE WHEN f.hw IS NULL THEN d.reported_hardware_version
                                     WHEN d.hardware_version IS NULL OR f.hw = d.hardware_version THEN NULL
                                     ELSE f.hw END
  FROM f
  WHERE d.id = f.id AND (f.last_seen IS NULL OR (f.db_hw IS NULL AND f.hw IS NOT NULL)
                         OR f.hw IS DISTINCT FROM coalesce(f.db_rhw, f.db_hw) AND f.hw IS NOT NULL
                         OR f.last_seen < f.seen - make_interval(secs => $5))
), ins AS (
  INSERT INTO devices (project_id, serial, hardware_version, cohort_id, last_seen)
  SELECT f.pid, f.serial, f.hw, c.id, f.seen
  FROM f JOIN cohorts c ON c.project_id = f.pid AND c.is_default
  WHERE f.id IS NULL
  ORDER BY f.pid, f.serial
  ON CONFLICT (project_id, serial) DO UPDATE
    SET last_seen = greatest(devices.last_seen, EXCLUDED.last_seen),
        hardware_version = coalesce(devices.hardware_version, EXCLUDED.hardware_version)
  RETURNING id, project_id, serial
), ids AS MATERIALIZED (
  SELECT array_agg(coalesce(f.id, n.id) ORDER BY f.i) AS a
  FROM f LEFT JOIN ins n ON f.id IS NULL AND n.project_id = f.pid AND n.serial = f.serial
), v AS (
  SELECT (SELECT a FROM ids)[v.di] AS device_id, v.*
  FROM unnest($6::int[], $7::text[], $8::text[], $9::text[], $10::bool[], $11::text[], $12::bool[])
       WITH ORDINALITY AS v(di, sw, version, prev, last, protocol, contested, n)
), changes AS MATERIALIZED (
  SELECT v.device_id, v.sw, v.version, coalesce(v.prev, s.version) AS previous, v.last, v.protocol,
         to_timestamp(($4::float8[])[v.di]) AS seen, v.n, s.version IS NOT NULL AS stored
  FROM v LEFT JOIN LATERAL (
    SELECT s.version FROM device_software s WHERE s.device_id = v.device_id AND s.software_type = v.sw LIMIT 1
  ) s ON true
  WHERE v.device_id IS NOT NULL AND (v.prev IS NOT NULL OR v.contested OR s.version IS DISTINCT FROM v.version)
), hist AS (
  INSERT INTO device_version_history (device_id, software_type, version, previous_version, protocol, seen_at)
  SELECT device_id, sw, version, previous, protocol, seen FROM changes ORDER BY n
), cur AS (
  UPDATE device_software s
  SET version = c.version, reported_at = c.seen,
      updated_at = CASE WHEN s.version = c.version THEN s.updated_at ELSE c.seen END
  FROM changes c
  WHERE c.last AND c.stored AND s.device_id = c.device_id AND s.software_type = c.sw
    AND c.seen >= coalesce(s.reported_at, s.updated_at)
)
INSERT INTO device_software (device_id, software_type, version, updated_at, reported_at)
SELECT device_id, sw, version, seen, seen FROM changes WHERE last AND NOT stored
ORDER BY device_id, sw
ON CONFLICT (device_id, software_type) DO UPDATE
  SET version = EXCLUDED.version, reported_at = EXCLUDED.reported_at,
      updated_at = CASE WHEN device_software.version = EXCLUDED.version THEN device_software.updated_at
                        ELSE EXCLUDED.updated_at END
  WHERE coalesce(device_software.reported_at, device_software.updated_at) <= EXCLUDED.reported_at
"""


# a device that never reported a version checks in without one, under any of its project's
# software types: it is listed under each of them with version NULL
_RECENT_CHECKINS = """
FROM devices d
LEFT JOIN device_software s ON s.device_id = d.id
LEFT JOIN software_types st ON s.device_id IS NULL AND st.project_id = d.project_id
WHERE d.last_seen > now() - make_interval(secs => $1) AND coalesce(s.software_type, st.name) IS NOT NULL
"""


async def estimated_checkin_keys(conn) -> int:
    """PostgreSQL's estimate of the stored (device, software type) pairs (0 before any ANALYZE)."""
    return max(0, int(await conn.fetchval("SELECT reltuples FROM pg_class WHERE oid = 'device_software'::regclass")))


async def count_recent_checkins(conn, within_seconds: float) -> int:
    """How many (device, software type) pairs were seen within the last `within_seconds`."""
    return await conn.fetchval("SELECT count(*) " + _RECENT_CHECKINS, within_seconds)


async def recent_checkins(conn, within_seconds: float):
    """(project id, serial, software type, hardware, version, last seen as epoch seconds) of the
    devices seen within the last `within_seconds`, streamed through a cursor (the connection must
    not be in use meanwhile)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for r in conn.cursor(
                "SELECT d.project_id, d.serial, coalesce(s.software_type, st.name), d.hardware_version, s.version, "
                "extract(epoch FROM d.last_seen)::float8 " + _RECENT_CHECKINS, within_seconds, prefetch=10_000):
            yield tuple(r)
