"""Check-in ingestion: how many check-ins per second the write-behind path writes into a large
device table, sustained, with nothing lost and the buffer bounded.

    .venv/bin/python loadtest/seed.py --devices 1000000 --data-dir /tmp/ota-1m
    .venv/bin/python loadtest/bench_ingest.py --data-dir /tmp/ota-1m [--seconds 20]

A producer feeds the same CheckinBuffer the gateway uses (every check-in a version change of an
existing device, so each row updates the current version and appends history), as fast as the
buffer's back-pressure allows, for --seconds; then the rows are counted in the database.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from gateway.memory.checkins import CheckinBuffer  # noqa: E402
from gateway.pgembed import EmbeddedPostgres  # noqa: E402
from gateway.store import db as db_store


async def run(dsn: str, seconds: float, devices: int, max_size: int, change_share: float) -> None:
    pool = await db_store.create_pool(dsn, max_size=4)
    pid = await pool.fetchval("SELECT id FROM projects WHERE slug = 'bench'")
    n_devices = await pool.fetchval("SELECT count(*) FROM devices WHERE project_id = $1", pid)
    devices = min(devices, n_devices)
    tag = f"ingest-{int(time.time())}"
    buf = CheckinBuffer(pool, interval=1.0, max_size=max_size, last_seen_granularity=300)
    buf.start(preload=False)  # measure writing, not the start-up read of recent check-ins
    produced, changes, peak = 0, 0, 0
    rng = random.Random(1)
    current = {}  # what each device last reported in this run
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        for _ in range(1000):
            i = rng.randrange(1, devices + 1)
            if i not in current or rng.random() < change_share:
                current[i] = f"{tag}-{produced}"
                changes += 1
            buf.add(pid, f"D{i}", None, "main", current[i], "bench")
            produced += 1
        peak = max(peak, len(buf))
        await buf.room()  # back-pressure: wait for the flush when the buffer is full
        await asyncio.sleep(0)
    await buf.stop()
    elapsed = time.perf_counter() - t0
    written = await pool.fetchval("SELECT count(*) FROM device_version_history WHERE version LIKE $1", tag + "-%")
    stored = await pool.fetchval(
        "SELECT count(*) FROM device_software s JOIN devices d ON d.id = s.device_id "
        "WHERE d.project_id = $1 AND s.software_type = 'main' AND s.version LIKE $2", pid, tag + "-%")
    await pool.close()
    print(f"devices in table: {n_devices:,}; check-ins produced: {produced:,} in {elapsed:.1f}s "
          f"({changes:,} of them version changes)")
    print(f"history rows written: {written:,}; devices whose current version is this run's: {stored:,} "
          f"of {len(current):,} touched (lost = {len(current) - stored:,})")
    print(f"sustained ingestion: {produced / elapsed:,.0f} check-ins/s ({changes / elapsed:,.0f} version changes/s); "
          f"buffer peak {peak:,} (bound {max_size:,})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument("--max-size", type=int, default=200_000)
    ap.add_argument("--change-share", type=float, default=1.0,
                    help="share of check-ins that report a new version (1.0: every one, the worst case)")
    args = ap.parse_args()
    pg = EmbeddedPostgres(args.data_dir)
    dsn = pg.start()
    try:
        asyncio.run(run(dsn, args.seconds, args.devices, args.max_size, args.change_share))
    finally:
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
