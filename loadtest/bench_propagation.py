"""How fast an activation reaches every worker: activate a release through the management API,
then poll (16 new connections at a time, so SO_REUSEPORT spreads them over every worker) until
a whole round answers with the new release. Prints per-trial and median figures.

    .venv/bin/python loadtest/bench_propagation.py [--workers 2] [--trials 10]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import stack  # noqa: E402
from bench_poll import KEY, ORG, PROJECT, TOKEN  # noqa: E402



async def trials(base: str, n: int, fanout: int) -> list[tuple[float, float]]:
    p = f"{base}/api/v0/organizations/{ORG}/projects/{PROJECT}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    out = []
    async with aiohttp.ClientSession() as s:
        for i in range(n):
            version = f"5.{i}.0"
            await stack.upload(s, base, TOKEN, ORG, PROJECT, version, os.urandom(2048), software_type="prop",
                               accept=(201,))
            await asyncio.sleep(0.3)  # every worker has loaded the new release before the clock starts
            params = {"device_serial": "PROP1", "hardware_version": "mp", "software_type": "prop",
                      "current_version": "0.0.1"}
            t0 = time.perf_counter()
            await stack.activate(s, base, TOKEN, ORG, PROJECT, version, software_type="prop")
            t_commit = time.perf_counter()
            deadline = t_commit + 5
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
                async def one() -> bool:
                    async with fresh.get(base + "/api/v0/releases/latest/url", params=params,
                                         headers={"Memfault-Project-Key": KEY}) as r:
                        return r.status == 200  # before the activation this device gets 204
                while time.perf_counter() < deadline:
                    if all(await asyncio.gather(*(one() for _ in range(fanout)))):
                        break
            out.append((t_commit - t0, time.perf_counter() - t_commit))
            # deactivate, so the next trial starts from "no update"
            async with s.get(p + "/deployments", params={"cohort": "default", "release": version}, headers=auth) as r:
                dep = (await r.json())["data"][0]
            async with s.delete(p + f"/deployments/{dep['id']}", headers=auth) as r:
                assert r.status == 200
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--fanout", type=int, default=16)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ota-prop-")
    base, proc = stack.serve(tmp, workers=args.workers, env={
        "OTA_ORG": ORG, "OTA_PROJECT": PROJECT, "OTA_ORG_TOKEN": TOKEN, "OTA_PROJECT_KEY": KEY})
    try:
        results = asyncio.run(trials(base, args.trials, args.fanout))
        print(f"\nworkers={args.workers} trials={args.trials} fanout={args.fanout} new connections per round")
        print(f"{'trial':>5}{'activate ms':>14}{'all workers serve it ms':>26}")
        for i, (commit, prop) in enumerate(results):
            print(f"{i:>5}{commit * 1000:>14.1f}{prop * 1000:>26.1f}")
        print(f"{'median':>5}{statistics.median(r[0] for r in results) * 1000:>14.1f}"
              f"{statistics.median(r[1] for r in results) * 1000:>26.1f}")
        print(f"{'max':>5}{max(r[0] for r in results) * 1000:>14.1f}{max(r[1] for r in results) * 1000:>26.1f}")
    finally:
        stack.stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
