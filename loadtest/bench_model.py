"""Release-model timings on a large fleet: staged rollout marking, re-marking, filtered staging,
the version matrix and inspect, through the management API of a running gateway.

    .venv/bin/python loadtest/seed.py --devices 1000000 --data-dir /tmp/ota-1m
    .venv/bin/python loadtest/bench_model.py --data-dir /tmp/ota-1m

Starts the gateway on that data dir (embedded PostgreSQL) on 127.0.0.1, runs each operation
--repeat times and prints the median and max wall time.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import stack  # noqa: E402

ORG, PROJECT, TOKEN = "bench-org", "bench", "oat_bench_token"


async def bench(base: str, repeat: int) -> list[tuple[str, list[float], str]]:
    p = f"{base}/api/v0/organizations/{ORG}/projects/{PROJECT}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    out = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as s:
        async def call(method, path, **kw):
            async with s.request(method, p + path, headers=auth, **kw) as r:
                body = await r.json() if r.status != 204 else None
                assert r.status < 400, body
                return body

        # 2.1.0 may exist from an earlier run on this data dir (409 same bytes, 400 other bytes)
        await stack.upload(s, base, TOKEN, ORG, PROJECT, "2.1.0", hashlib.sha256(b"bench 2.1.0").digest() * 128,
                           accept=(201, 400, 409))

        async def timed(label, method, path, summary=lambda b: "", **kw):
            times, note = [], ""
            for _ in range(repeat):
                t0 = time.perf_counter()
                body = await call(method, path, **kw)
                times.append(time.perf_counter() - t0)
                note = summary(body)
            out.append((label, times, note))

        pct = iter([10, 20] * repeat)
        await timed("staged rollout: activate/re-mark at 10/20 % of default cohort", "POST", "/deployments",
                    lambda b: f"{b['data']['rollout_percent']} %",
                    json={"type": "staged_rollout", "release": "2.1.0", "cohort": "default", "rollout_percent": 10})
        for _ in range(repeat):  # alternate percentages: each call re-marks the whole cohort
            t0 = time.perf_counter()
            await call("POST", "/deployments", json={"type": "staged_rollout", "release": "2.1.0",
                                                     "cohort": "default", "rollout_percent": next(pct)})
            out[-1][1].append(time.perf_counter() - t0)
        await timed("stage 500 more on 1.0.0, most recently seen first", "POST", "/cohorts/default/staging",
                    lambda b: f"{b['data']['staged']:,} of {b['data']['devices']:,} staged",
                    json={"staged": True, "limit": 500, "current_version": "1.0.0", "software_type": "main"})
        await timed("version matrix, default cohort", "GET", "/cohorts/default/version-matrix?software_type=main",
                    lambda b: f"{b['data']['devices']:,} devices, {len(b['data']['rows'])} rows")
        await timed("version matrix, beta cohort", "GET", "/cohorts/beta/version-matrix?software_type=main",
                    lambda b: f"{b['data']['devices']:,} devices")
        await timed("inspect one device", "GET", "/devices/D123457/inspect?software_type=main",
                    lambda b: b["data"]["software"][0]["memfault"]["reason"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    t0 = time.monotonic()
    base, proc = stack.serve(args.data_dir, workers=args.workers)
    try:
        print(f"gateway ready (mirror loaded) in {time.monotonic() - t0:.2f}s")
        results = asyncio.run(bench(base, args.repeat))
        print(f"{'operation':<64}{'median s':>10}{'max s':>8}  note")
        for label, times, note in results:
            print(f"{label:<64}{statistics.median(times):>10.3f}{max(times):>8.3f}  {note}")
    finally:
        stack.stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
