"""Retention at fleet scale: how big the version history, DDI feedback and audit log grow in 30
days of a 100,000-device fleet, what pruning them to 7 days takes, and that they then stay flat.

    .venv/bin/python loadtest/bench_retention.py [--devices 100000] [--days 30] [--retain 7]

Simulated activity (rows COPYed in time order, as the gateway appends them):
- a release every 10 days (days 3, 13, 23, 33), which 97 % of the devices install within 5 days;
  every install is one version report, i.e. one history row (plus each device's first report in
  the first day), so about 0.3 history rows per device per 10 days;
- half the fleet updates over DDI: an action per install and 6 feedback rows (download started,
  4 progress reports, closed), each with SWUpdate-like details; 1 % of installs fail (closed,
  failure: no version report), 0.5 % of devices hang mid-install and keep their action open (their
  feedback is kept however old);
- 1,000 audit entries a day (releases, deployments, overrides by people and CI jobs).
After --days the three tables are pruned to --retain days by services.retention.prune (batches of
10,000), then VACUUMed (as autovacuum would); then --more-days days follow one by one, each
appended and pruned, to show the tables reuse the freed space instead of growing.
Starts an embedded PostgreSQL (127.0.0.1 only) in a fresh --data-dir, removed at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gateway.cli import prepare_database  # noqa: E402
from gateway.config import Settings  # noqa: E402
from gateway.pgembed import EmbeddedPostgres  # noqa: E402
from gateway.services import retention  # noqa: E402
from gateway.store import db as db_store  # noqa: E402
from gateway.store import retention as retention_store  # noqa: E402

ORG, PROJECT = "bench-org", "bench"
RELEASE_EVERY, ADOPTION_DAYS, ADOPTED, FAILED, HUNG = 10, 5.0, 0.97, 0.01, 0.005
AUDIT_PER_DAY = 1000
DETAILS = (["Downloading swupdate image", "Verifying signature"], ["Installing image 1 of 2: rootfs"],
           ["Installing image 2 of 2: bootloader"], ["Update written, rebooting"], ["Reboot complete"],
           ["SWUPDATE successful !", "Image installed on /dev/mmcblk0p3"])
FAILED_DETAILS = ["ERROR: sha256 mismatch for image rootfs", "SWUPDATE failed [0] ERROR core/stream_interface.c"]
PROGRESS = [{"cnt": k, "of": 5} for k in range(6)]


class Fleet:
    """Generates the simulated rows of each day (virtual days 0, 1, ...; day d is `now - (end - d)`
    days in real time, `end` the last simulated day) for the COPY of that day."""

    def __init__(self, devices: int, end: int, now: datetime):
        self.devices, self.end, self.now = devices, end, now
        self.rng = random.Random(7)
        self.version = {}      # device -> current version
        self.hung = set()      # devices whose action stays open: offered nothing more
        self.pending = {}      # day -> [rows by table]
        self.action_id = 0

    def ts(self, day: float) -> datetime:
        return self.now - timedelta(days=self.end - day)

    def add(self, day: float, table: str, row: tuple) -> None:
        self.pending.setdefault(int(day), {}).setdefault(table, []).append((day, row))

    def first_reports(self) -> None:
        for d in range(1, self.devices + 1):
            self.version[d] = "1.0.0"
            self.add(self.rng.random(), "device_version_history", (d, "main", "1.0.0", None, "memfault"))

    def release(self, day: int, version: str) -> None:
        rng = self.rng
        for d in range(1, self.devices + 1):
            if d in self.hung or rng.random() >= ADOPTED:
                continue
            t = day + rng.uniform(0, ADOPTION_DAYS)
            ddi = d % 2 == 0
            if ddi and not self._install(d, t, version):
                continue
            self.add(t + 0.001, "device_version_history",
                     (d, "main", version, self.version[d], "ddi" if ddi else "memfault"))
            self.version[d] = version

    def _install(self, d: int, t: float, version: str) -> bool:
        """A DDI action and its feedback; True when it succeeded."""
        rng = self.rng
        self.action_id += 1
        hang, fail = rng.random() < HUNG, rng.random() < FAILED
        status = "open" if hang else "failed" if fail else "succeeded"
        self.add(t, "device_actions", (self.action_id, d, "main", version, status))
        step = rng.uniform(10, 120) / 1440 / 5  # 10 min to 2 h from download to the end
        for k in range(2 if hang else 6):
            final = k == 5
            details = FAILED_DETAILS if final and fail else DETAILS[k]
            self.add(t + k * step, "device_action_feedback",
                     (self.action_id, "deployment", "closed" if final else "proceeding",
                      ("failure" if fail else "success") if final else "none", 0 if final else None,
                      PROGRESS[k], details))
        if hang:
            self.hung.add(d)
        return status == "succeeded"

    def audit(self, day: int) -> None:
        for _ in range(AUDIT_PER_DAY):
            self.add(day + self.rng.random(), "audit_log",
                     ("ci@example.com", "device.override", f"device:D{self.rng.randrange(1, self.devices + 1)}",
                      {"release": None}, {"release": "1.3.0", "reason": "field test"}))

    def day_rows(self, day: int) -> dict[str, list[tuple]]:
        """Rows of one day in time order, each with its real timestamp last."""
        out = {}
        for table, rows in self.pending.pop(day, {}).items():
            rows.sort(key=lambda r: r[0])
            out[table] = [(*row, self.ts(t)) for t, row in rows]
        return out


COLUMNS = {
    "device_version_history": ["device_id", "software_type", "version", "previous_version", "protocol", "seen_at"],
    "device_actions": ["id", "device_id", "software_type", "version", "status", "created_at"],
    "device_action_feedback": ["action_id", "kind", "execution", "finished", "code", "progress", "details",
                               "received_at"],
    "audit_log": ["actor", "action", "object", "before", "after", "at"],
}
ORDER = ("device_actions", "device_version_history", "device_action_feedback", "audit_log")


async def copy_day(conn, fleet: Fleet, day: int, pid: int, first_device: int) -> int:
    rows = fleet.day_rows(day)
    n = 0
    for table in ORDER:
        batch = rows.get(table, [])
        cols = COLUMNS[table]
        if table == "device_actions":
            batch = [(i, pid, first_device + d - 1, *rest) for i, d, *rest in batch]
            cols = ["id", "project_id", *cols[1:]]
        elif table == "device_version_history":
            batch = [(first_device + d - 1, *rest) for d, *rest in batch]
        elif table == "audit_log":
            batch, cols = [(pid, *r) for r in batch], ["project_id", *cols]
        if batch:
            await conn.copy_records_to_table(table, records=batch, columns=cols)
            n += len(batch)
    return n


async def sizes(conn) -> dict[str, tuple[int, int, int]]:
    out = {}
    for table in retention_store.TABLES:
        rows = await conn.fetchval(f"SELECT count(*) FROM {table}")
        total, idx = await conn.fetchrow("SELECT pg_total_relation_size($1::regclass), pg_indexes_size($1::regclass)",
                                         table)
        out[table] = (rows, total, idx)
    return out


def show(title: str, s: dict[str, tuple[int, int, int]]) -> None:
    print(f"\n{title}")
    print(f"  {'table':<24}{'rows':>12}{'total MB':>10}{'indexes MB':>12}")
    for table, (rows, total, idx) in s.items():
        print(f"  {table:<24}{rows:>12,}{total / 2**20:>10.1f}{idx / 2**20:>12.1f}")
    print(f"  {'all three':<24}{sum(v[0] for v in s.values()):>12,}"
          f"{sum(v[1] for v in s.values()) / 2**20:>10.1f}{sum(v[2] for v in s.values()) / 2**20:>12.1f}")


class StatementTimer:
    """The duration of every batch statement (each one is a transaction holding its row locks)."""

    def __init__(self):
        self.times: list[float] = []
        self.real = retention_store.prune_batch

    async def __call__(self, *args, **kw):
        t0 = time.perf_counter()
        try:
            return await self.real(*args, **kw)
        finally:
            self.times.append(time.perf_counter() - t0)


async def prune_all(pool, days: int, timer: StatementTimer) -> tuple[float, dict]:
    t0 = time.perf_counter()
    outs = {t: await retention.prune(pool, retention.Policy(t, days), budget=600) for t in retention_store.TABLES}
    return time.perf_counter() - t0, outs


async def vacuum(conn) -> None:
    for table in retention_store.TABLES:
        await conn.execute(f"VACUUM (ANALYZE) {table}")


async def seed_devices(conn, pid: int, n: int) -> int:
    cohort = await conn.fetchval("SELECT id FROM cohorts WHERE project_id = $1 AND is_default", pid)
    first = await conn.fetchval("SELECT coalesce(max(id), 0) + 1 FROM devices")
    await conn.copy_records_to_table("devices", columns=["id", "project_id", "serial", "hardware_version", "cohort_id"],
                                     records=((first + i, pid, f"D{i + 1}", "mp", cohort) for i in range(n)))
    await conn.copy_records_to_table("device_software", columns=["device_id", "software_type", "version"],
                                     records=((first + i, "main", "1.0.0") for i in range(n)))
    await conn.execute("SELECT setval(pg_get_serial_sequence('devices', 'id'), (SELECT max(id) FROM devices))")
    return first


async def connect_seeder(dsn: str) -> asyncpg.Connection:
    """A connection for the COPYs: jsonb in binary (COPY's format), as PostgreSQL's jsonb version 1."""
    conn = await asyncpg.connect(dsn)
    await conn.set_type_codec("jsonb", schema="pg_catalog", format="binary",
                              encoder=lambda v: b"\x01" + orjson.dumps(v), decoder=lambda b: orjson.loads(b[1:]))
    return conn


async def run(dsn: str, args) -> None:
    pool = await db_store.create_pool(dsn, max_size=2)
    seeder = await connect_seeder(dsn)
    timer = StatementTimer()
    retention_store.prune_batch = timer
    try:
        pid = await seeder.fetchval("SELECT id FROM projects WHERE slug = $1", PROJECT)
        first = await seed_devices(seeder, pid, args.devices)
        fleet = Fleet(args.devices, args.days + args.more_days, await seeder.fetchval("SELECT now()"))
        t0 = time.perf_counter()
        fleet.first_reports()
        rows = 0
        for day in range(args.days):
            rows += await advance(seeder, fleet, day, pid, first)
        await seeder.execute("ANALYZE")
        print(f"{args.devices:,} devices, {args.days} days of activity: {rows:,} rows seeded in "
              f"{time.perf_counter() - t0:.0f}s")
        show(f"after {args.days} days", await sizes(seeder))
        took, outs = await prune_all(pool, args.retain + args.more_days, timer)
        deleted = sum(o.deleted for o in outs.values())
        print(f"\npruned to {args.retain} days: {deleted:,} rows deleted in {took:.1f}s "
              f"({deleted / took:,.0f} rows/s), {len(timer.times)} statements, "
              f"longest {max(timer.times) * 1000:.0f} ms")
        for o in outs.values():
            print(f"  {o.table:<24}{o.deleted:>10,} deleted of {o.examined:>10,} examined, {o.statements:>4} "
                  f"statements, {o.seconds:.1f}s")
        show("after pruning", await sizes(seeder))
        await vacuum(seeder)
        show("after VACUUM (the space is free for new rows, not returned)", await sizes(seeder))
        await steady(pool, seeder, fleet, args, pid, first, timer)
    finally:
        await seeder.close()
        await pool.close()


async def advance(conn, fleet: Fleet, day: int, pid: int, first: int) -> int:
    """Generate what happens on `day` (a release day's installs run into the next days) and COPY it."""
    if day % RELEASE_EVERY == 3:
        fleet.release(day, f"1.{day // RELEASE_EVERY + 1}.0")
    fleet.audit(day)
    n = await copy_day(conn, fleet, day, pid, first)
    await conn.execute("SELECT setval(pg_get_serial_sequence('device_actions', 'id'), $1)", max(fleet.action_id, 1))
    return n


async def steady(pool, seeder, fleet: Fleet, args, pid: int, first: int, timer: StatementTimer) -> None:
    if not args.more_days:
        return
    print(f"\n{args.more_days} more days, each appended, pruned to {args.retain} days and VACUUMed:")
    for day in range(args.days, args.days + args.more_days):
        rows = await advance(seeder, fleet, day, pid, first)
        timer.times.clear()
        took, outs = await prune_all(pool, args.retain + fleet.end - day - 1, timer)
        print(f"  day {day + 1}: {rows:>8,} rows added, {sum(o.deleted for o in outs.values()):>8,} deleted in "
              f"{took:.2f}s ({len(timer.times)} statements, longest {max(timer.times) * 1000:.0f} ms)")
        await vacuum(seeder)
    show(f"after day {args.days + args.more_days}", await sizes(seeder))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--retain", type=int, default=7)
    ap.add_argument("--more-days", type=int, default=7)
    ap.add_argument("--data-dir", default="/tmp/ota-bench-retention")
    args = ap.parse_args()
    if not (0 < args.devices <= 1_000_000 and 0 < args.retain < args.days <= 60 and 0 <= args.more_days <= 30):
        ap.error("bounded: --devices up to 1,000,000, --retain < --days <= 60, --more-days <= 30")
    shutil.rmtree(args.data_dir, ignore_errors=True)
    pg = EmbeddedPostgres(args.data_dir)
    dsn = pg.start()
    try:
        asyncio.run(prepare_database(Settings(database_url=dsn, data_dir=args.data_dir,
                                              bootstrap={"org": ORG, "project": PROJECT})))
        asyncio.run(run(dsn, args))
    finally:
        pg.stop()
        shutil.rmtree(args.data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
