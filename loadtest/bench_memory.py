"""Resident memory per worker with a large fleet: start the gateway on a seeded data dir, let
every worker load its mirror, poll with many distinct serials (bounded), then read VmRSS of
each worker from /proc. Prints the mirror's size (device exceptions) next to it.

    .venv/bin/python loadtest/seed.py --devices 1000000 --data-dir /tmp/ota-1m
    .venv/bin/python loadtest/bench_memory.py --data-dir /tmp/ota-1m [--polls 200000]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import stack  # noqa: E402

KEY = "benchkey0000000000000000000000000"


def rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024


def pss_mb(pid: int) -> float:
    """Proportional set size: shared pages (the workers' common check-in table) split between
    the processes that map them, so the workers' PSS add up to what they use together."""
    m = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.M)
    return int(m.group(1)) / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--polls", type=int, default=200_000, help="distinct serials polled through wrk (bounded)")
    ap.add_argument("--fleet-seen-now", action="store_true",
                    help="first mark every device as seen now, so each worker preloads the fleet's written state")
    args = ap.parse_args()
    if args.fleet_seen_now:
        import seed
        print(f"marked {seed.mark_seen(args.data_dir):,} devices as seen now")
    base, proc = stack.serve(args.data_dir, workers=args.workers)
    try:
        time.sleep(1)
        deadline = time.monotonic() + 120  # the preload of recent check-ins runs after start: wait for it
        known, previous = stack.metric(base, "ota_gateway_checkin_known_devices"), -1.0
        while args.fleet_seen_now and time.monotonic() < deadline and (known == 0 or known != previous):
            time.sleep(2)
            known, previous = stack.metric(base, "ota_gateway_checkin_known_devices"), known
        workers = stack.workers(proc.pid)
        idle = {p: rss_mb(p) for p in workers}
        exceptions = stack.metric(base, "ota_gateway_mirror_device_exceptions")
        # poll with many distinct serials: the check-in buffers and the written-state cache fill up
        duration = max(5, args.polls // 20000)
        subprocess.run(["wrk", "-t1", "-c64", f"-d{duration}s", "-s", str(HERE / "poll.lua"), base],
                       env={**os.environ, "OTA_KEY": KEY, "OTA_PATH": "/api/v0/releases/latest/url",
                            "OTA_DEVICES": str(args.polls)}, capture_output=True, timeout=duration + 30)
        time.sleep(2)
        loaded = {p: rss_mb(p) for p in workers}
        pss = {p: pss_mb(p) for p in workers}
        after = stack.metric(base, "ota_gateway_checkin_known_devices")
        print(f"device exceptions in each worker's mirror: {exceptions:,.0f}; check-in states known "
              f"(all workers): {known:,.0f} idle, {after:,.0f} after polls")
        print(f"{'worker':>8}{'RSS idle MB':>14}{'RSS after polls MB':>22}{'PSS after polls MB':>22}")
        for p in workers:
            print(f"{p:>8}{idle[p]:>14.1f}{loaded[p]:>22.1f}{pss[p]:>22.1f}")
    finally:
        stack.stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
