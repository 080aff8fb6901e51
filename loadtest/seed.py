"""Seed a project with N devices and M releases, fast (COPY), for benchmarks.

    .venv/bin/python loadtest/seed.py --devices 1000000 --releases 500 --data-dir /tmp/ota-1m

Devices D1..DN: hardware and current version as in fleet.py / poll.lua; a share of them
(--other-cohorts-share) spread over non-default cohorts. Releases 0.0.1 … plus 1.0.0, 1.5.0
(must-pass-through) and 2.0.0, each with a payload for mp and evt, all active in every cohort.
Starts an embedded PostgreSQL in --data-dir unless --database-url is given; prints the DSN file
location, never the password.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet import hardware_of, serial, version_of  # noqa: E402

from gateway.cli import prepare_database  # noqa: E402
from gateway.config import Settings  # noqa: E402
from gateway.domain.staging import new_salt  # noqa: E402
from gateway.pgembed import EmbeddedPostgres  # noqa: E402
from gateway.progress import Progress  # noqa: E402
from gateway.store import db as db_store
from gateway.store import deployments as deployments_store
from gateway.store import fleet as fleet_store
from gateway.store import projects as projects_store
from gateway.store import releases as releases_store
from gateway.store import resolution as resolution_store

ORG, PROJECT, TOKEN, KEY = "bench-org", "bench", "oat_bench_token", "benchkey0000000000000000000000000"
COHORTS = ["beta", "canary", "field-test", "recovery"]


def release_versions(m: int) -> list[tuple[str, bool]]:
    core = [("1.0.0", False), ("1.5.0", True), ("2.0.0", False)]
    return [(f"0.{i // 100}.{i % 100}", False) for i in range(max(0, m - len(core)))] + core


async def seed(dsn: str, storage: Path, devices: int, releases: int, other_share: float) -> dict:
    conn = await asyncpg.connect(dsn)
    await db_store.init_connection(conn)
    timings = {}
    try:
        pid = await conn.fetchval("SELECT id FROM projects WHERE slug = $1", PROJECT)
        default = await conn.fetchval("SELECT id FROM cohorts WHERE project_id = $1 AND is_default", pid)
        cohort_ids = []
        for slug in COHORTS:
            await fleet_store.create_cohort(conn, pid, slug, slug)
            cohort_ids.append(await conn.fetchval("SELECT id FROM cohorts WHERE project_id = $1 AND slug = $2",
                                                  pid, slug))
        for hw in ("mp", "evt", "dvt"):
            await projects_store.add_hardware_version(conn, pid, hw)
        await projects_store.add_software_type(conn, pid, "main")

        t0 = time.perf_counter()
        other_every = int(1 / other_share) if other_share > 0 else 0
        start = await conn.fetchval("SELECT coalesce(max(id), 0) FROM devices")

        seen = datetime.now(timezone.utc)  # a live fleet: every device was seen just now

        def device_rows():
            for i in range(1, devices + 1):
                cohort = cohort_ids[i % len(cohort_ids)] if other_every and i % other_every == 0 else default
                yield (start + i, pid, serial(i), hardware_of(i), cohort, seen)

        progress = Progress(devices, "seeding devices", unit="devices")
        chunk = 200_000
        rows = device_rows()
        done = 0
        while done < devices:
            batch = [r for _, r in zip(range(chunk), rows)]
            await conn.copy_records_to_table("devices", records=batch,
                                             columns=["id", "project_id", "serial", "hardware_version", "cohort_id",
                                                      "last_seen"])
            sw = [(r[0], "main", version_of(r[0] - start)) for r in batch if version_of(r[0] - start)]
            await conn.copy_records_to_table("device_software", records=sw,
                                             columns=["device_id", "software_type", "version"])
            done += len(batch)
            progress.update(len(batch))
        progress.close()
        await conn.execute("SELECT setval(pg_get_serial_sequence('devices', 'id'), (SELECT max(id) FROM devices))")
        await conn.execute("ANALYZE devices; ANALYZE device_software")
        timings["devices_seconds"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        async with conn.transaction():
            for version, mpt in release_versions(releases):
                rel = await releases_store.create_release(conn, pid, software_type="main", version=version, from_version=None,
                                                 must_pass_through=mpt, revision="", notes="", extra_info=None,
                                                 created_by="seed")
                for hw in ("mp", "evt"):
                    content = hashlib.sha256(f"{version}/{hw}".encode()).digest() * 2048  # 64 KiB
                    sha = hashlib.sha256(content).hexdigest()
                    path = storage / sha[:2] / sha
                    path.parent.mkdir(parents=True, exist_ok=True)
                    if not path.exists():
                        path.write_bytes(content)
                    await releases_store.create_payload(conn, rel["id"], hardware_version=hw, firmware_type="firmware",
                                               filename=f"fw-{version}.bin", size=len(content), sha256=sha,
                                               md5=hashlib.md5(content).hexdigest(),
                                               sha1=hashlib.sha1(content).hexdigest(), extra_info=None)
                for cid in [default] + cohort_ids:
                    await deployments_store.create_activation(conn, pid, rel["id"], cid, type_="normal", rollout_percent=None,
                                                  actor="seed", salt=new_salt())
            await resolution_store.rebuild_resolution(conn, pid)
        timings["releases_seconds"] = time.perf_counter() - t0
    finally:
        await conn.close()
    return timings


def mark_seen(data_dir: str | None = None, database_url: str | None = None) -> int:
    """Mark every device as seen now, as in a fleet that polls every minute; returns how many."""
    pg = None if database_url else EmbeddedPostgres(data_dir)
    dsn = database_url or pg.start()

    async def run() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return int((await conn.execute("UPDATE devices SET last_seen = now()")).split()[-1])
        finally:
            await conn.close()
    try:
        return asyncio.run(run())
    finally:
        if pg:
            pg.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument("--releases", type=int, default=500)
    ap.add_argument("--other-cohorts-share", type=float, default=0.1)
    ap.add_argument("--data-dir", default="/tmp/ota-seed")
    ap.add_argument("--database-url")
    ap.add_argument("--keep-running", action="store_true", help="leave the embedded PostgreSQL running")
    args = ap.parse_args()
    pg = None
    if args.database_url:
        dsn = args.database_url
    else:
        pg = EmbeddedPostgres(args.data_dir)
        dsn = pg.start()
    try:
        settings = Settings(database_url=dsn, data_dir=args.data_dir, bootstrap={
            "org": ORG, "project": PROJECT, "org_token": TOKEN, "project_key": KEY})
        asyncio.run(prepare_database(settings))
        t = asyncio.run(seed(dsn, Path(settings.effective_storage_dir), args.devices, args.releases,
                             args.other_cohorts_share))
        print(f"seeded {args.devices:,} devices in {t['devices_seconds']:.1f}s "
              f"({args.devices / t['devices_seconds']:,.0f}/s), {args.releases} releases in "
              f"{t['releases_seconds']:.1f}s; org {ORG}, project {PROJECT}, token {TOKEN}, key {KEY}")
    finally:
        if pg and not args.keep_running:
            pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
