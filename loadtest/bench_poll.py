"""Poll-path benchmark: wrk against the gateway's device routes and, in the same run, against a
bare aiohttp "hello" app with the same worker count and event loop. Prints requests/s, p50/p99
latency and the ratio poll rps / hello rps.

    .venv/bin/python loadtest/bench_poll.py [--workers 2] [--duration 10] [--connections 64]

Starts its own embedded PostgreSQL and gateway on 127.0.0.1 unless --database-url is given.
Every run is bounded by --duration per route.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import openloop  # noqa: E402
import stack  # noqa: E402

from gateway.pgembed import free_port  # noqa: E402

ORG, PROJECT, TOKEN, KEY = "bench-org", "bench", "oat_bench_token", "benchkey0000000000000000000000000"
# the gateway creates these at start (what seed.py seeds has the same names)
BOOTSTRAP = {"OTA_ORG": ORG, "OTA_PROJECT": PROJECT, "OTA_ORG_TOKEN": TOKEN, "OTA_PROJECT_KEY": KEY}


async def seed(base: str, releases: int = 5) -> None:
    """Full 1.0.0, MPT 1.5.0, full 2.0.0 (+ padding releases) for hardware mp and evt, all active."""
    versions = [("1.0.0", False), ("1.5.0", True), ("2.0.0", False)]
    versions += [(f"0.{i}.0", False) for i in range(1, max(0, releases - 3) + 1)]
    async with aiohttp.ClientSession() as s:
        for version, mpt in versions:
            for hw in ("mp", "evt"):
                content = hashlib.sha256(f"{version}{hw}".encode()).digest() * 1000
                await stack.upload(s, base, TOKEN, ORG, PROJECT, version, content, hardware=hw,
                                   must_pass_through=mpt)
            await stack.activate(s, base, TOKEN, ORG, PROJECT, version)
        async with s.post(f"{base}/api/v0/organizations/{ORG}/projects/{PROJECT}/devices",
                          json={"device_serial": "DVT-1", "hardware_version": "dvt"},
                          headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status in (201, 409)


LOAD_CPUS: set[int] | None = None  # --pin: the cores the load generators (wrk, openloop) run on


def wrk(url: str, path: str, duration: int, connections: int, env: dict) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(HERE / "poll.lua"), url],
        capture_output=True, text=True, env={**os.environ, **env, "OTA_PATH": path}, timeout=duration + 30,
        preexec_fn=(lambda: os.sched_setaffinity(0, LOAD_CPUS)) if LOAD_CPUS else None)
    text = out.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))

    def lat(pct: str) -> float:
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", text)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {"rps": rps, "p50": lat("50"), "p99": lat("99"), "non2xx": int(non2xx.group(1)) if non2xx else 0}


def kind(path: str) -> str:
    """A route's short name (--routes) and openloop mode: url, latest, ddi or hello."""
    return path.rsplit("/", 1)[-1]


def connection_split(port: int) -> list[int]:
    """Established connections to `port` per server process, largest first ([] without `ss`).
    The generator spreads requests evenly over its connections, so with 64 connections a worker
    holding 40 of them gets 62 % of the load: at 80 % of the total it runs at its limit."""
    try:
        out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(Counter(re.findall(r"pid=(\d+)", out)).values(), reverse=True)


def at_load(url: str, path: str, target: float, duration: int, env: dict, connections: int = 64) -> dict:
    """Latency at `target` req/s, open loop (openloop.c): requests arrive as a Poisson stream at
    the target rate whatever the answers' latency, each timed from when it was due, so a stalled
    server meets the requests that arrive meanwhile (no coordinated omission). Also how the
    connections were spread over the server's processes, sampled mid-run."""
    host, _, port = url.removeprefix("http://").partition(":")
    r: dict = {}
    run = threading.Thread(target=lambda: r.update(openloop.run(
        host, int(port), target, duration, connections=connections, warmup=2, mode=kind(path),
        devices=int(env["OTA_DEVICES"]), key=env["OTA_KEY"], cpus=LOAD_CPUS)))
    run.start()
    run.join(2 + duration / 2)  # past the generator's warm-up: every connection is open
    split = connection_split(int(port))
    run.join()
    if not r:
        raise SystemExit(f"openloop failed against {url}{path}")
    return {"rps": r["rps"], "p50": r["p50_ms"], "p99": r["p99_ms"], "p999": r["p999_ms"],
            "late": r["late_sends"], "queued": r["queued_sends"], "non2xx": r["completed"] - r["status_2xx"],
            "split": "/".join(map(str, split)) or "?"}


def drained(base: str, limit: float = 60) -> None:
    """Wait (bounded) until the first sightings of the warm-up are written: a flush still running
    while measuring would measure the write-behind catching up, not the steady state."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(1.5)  # the buffers flush every second; the gauge is published every second
        if stack.metric(base, "ota_gateway_checkin_buffer_depth") == 0:
            return
    print(f"check-in buffers not drained after {limit:.0f} s", flush=True)


def ddi_warmup(base: str, limit: int, connections: int, env: dict, step: int = 5) -> None:
    """Poll DDI until the device states are in memory: a device's state is read from the database
    on its first poll on this host (then shared by the workers), and with serials drawn at random
    that takes ~5 polls per device to cover the fleet (a coupon collector). Stops when a step
    loads state for fewer than 0.5 % of its polls, or after `limit` seconds; prints each step."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        loads = stack.metric(base, "ota_gateway_ddi_state_loads_total")
        seconds = min(step, max(1, int(limit - (time.monotonic() - began))))
        r = wrk(base, "ddi", seconds, connections, env)
        loads = stack.metric(base, "ota_gateway_ddi_state_loads_total") - loads
        polls = r["rps"] * seconds
        print(f"DDI warm-up {time.monotonic() - began:5.0f} s: {r['rps']:8.0f} req/s, state loads "
              f"{loads:8,.0f} ({loads / max(polls, 1):.1%} of polls)", flush=True)
        if loads < 0.005 * polls:
            return


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=1, help="alternate hello/poll runs this many times")
    ap.add_argument("--warmup", type=int, default=10,
                    help="seconds of unmeasured polling first, so the fleet is known (steady state)")
    ap.add_argument("--ddi-warmup", type=int, default=150,
                    help="at most this many seconds of unmeasured DDI polling first, until the device "
                         "states are in memory (steady state)")
    ap.add_argument("--devices", type=int, default=100_000, help="distinct serials polling")
    ap.add_argument("--database-url")
    ap.add_argument("--data-dir", help="a data dir seeded by loadtest/seed.py (its 'bench' project): no seeding")
    ap.add_argument("--routes", default="url,latest,ddi", help="which of url, latest, ddi to measure")
    ap.add_argument("--fleet-seen-now", action="store_true",
                    help="with --data-dir: first mark every seeded device as seen now (a live fleet polling "
                         "every minute), so each worker's start-up preload knows what the database holds")
    ap.add_argument("--load", type=float, default=0.8,
                    help="then run each route at this share of its measured maximum and report latency there "
                         "(0: skip)")
    ap.add_argument("--listen-mode", choices=("reuseport", "shared"), default="reuseport",
                    help="the gateway's OTA_LISTEN_MODE; the hello app always uses SO_REUSEPORT. With a "
                         "shared accept queue the first worker to wake takes most of the 64 connections "
                         "a generator opens at once (63/1 was seen), so one worker carries the load")
    ap.add_argument("--pin", action="store_true",
                    help="server processes on the first half of the cores, the load generators and "
                         "PostgreSQL on the rest "
                         "(use with --workers 1 on 2 cores): latency without the load generator taking "
                         "the server's cores")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk is required: apt-get install wrk", file=sys.stderr)
        return 2
    with stack.scratch_dir(args.data_dir, "ota-bench-") as tmp:
        return measure(args, tmp)


def measure(args: argparse.Namespace, tmp: str) -> int:
    """Start the gateway (on `tmp`) and the hello app, and print every table."""
    if args.fleet_seen_now and args.data_dir and not args.database_url:
        import seed as seed_tool
        print(f"marked {seed_tool.mark_seen(args.data_dir):,} devices as seen now")
    procs: list[subprocess.Popen] = []
    try:
        # without --database-url the gateway runs its own embedded PostgreSQL in the data dir
        base, gw = stack.serve(tmp, workers=args.workers, database_url=args.database_url,
                               env={**BOOTSTRAP, "OTA_LISTEN_MODE": args.listen_mode})
        procs.append(gw)
        hport = free_port()
        procs.append(subprocess.Popen([sys.executable, str(HERE / "hello_app.py"), "--port", str(hport),
                                       "--workers", str(args.workers)]))
        stack.wait_http(f"http://127.0.0.1:{hport}/")
        if args.pin:
            global LOAD_CPUS
            cpus = sorted(os.sched_getaffinity(0))
            server, LOAD_CPUS = set(cpus[:max(1, len(cpus) // 2)]), set(cpus[max(1, len(cpus) // 2):]) or None
            for p in (gw, procs[-1]):
                stack.pin(p.pid, server, LOAD_CPUS or server)
            print(f"pinned: gateway and hello on cores {sorted(server)}, load generators and PostgreSQL on {sorted(LOAD_CPUS or [])}")
        if not args.data_dir:  # a seeded data dir (loadtest/seed.py) has its fleet and releases already
            asyncio.run(seed(base))
        time.sleep(0.5)  # let every worker's mirror take the seeded releases before measuring
        wenv = {"OTA_KEY": KEY, "OTA_DEVICES": str(args.devices)}
        if args.warmup:  # every device registers, and each worker caches the DDI devices' state
            wrk(base, "/api/v0/releases/latest/url", args.warmup, args.connections, wenv)
        if args.ddi_warmup and "ddi" in args.routes:
            ddi_warmup(base, args.ddi_warmup, args.connections, wenv)
        if args.warmup or args.ddi_warmup:
            drained(base)
        routes = [("hello", f"http://127.0.0.1:{hport}", "/hello"),
                  ("/latest/url", base, "/api/v0/releases/latest/url"),
                  ("/latest", base, "/api/v0/releases/latest"),
                  ("DDI base poll", base, "ddi")]
        wanted = {"hello", *(r.strip() for r in args.routes.split(","))}
        routes = [r for r in routes if r[0] in wanted or r[2] in wanted or kind(r[2]) in wanted]
        results: dict[str, list[dict]] = {name: [] for name, _, _ in routes}
        written = stack.metric(base, "ota_gateway_checkins_written_total")
        for _ in range(args.rounds):
            for name, url, path in routes:
                results[name].append(wrk(url, path, args.duration, args.connections, wenv))
        written = stack.metric(base, "ota_gateway_checkins_written_total") - written
        print(f"\nworkers={args.workers} ({args.listen_mode}) connections={args.connections} duration={args.duration}s "
              f"devices={args.devices} warmup={args.warmup}s "
              f"rounds={args.rounds} (wrk -t1 on the same machine; medians)")
        print(f"{'route':<16}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'ratio':>8}")

        def med(name, key):
            vals = sorted(r[key] for r in results[name])
            return vals[len(vals) // 2]

        hello = med("hello", "rps")
        polls = sum(r["rps"] * args.duration for name, _, _ in routes if name != "hello" for r in results[name])
        print(f"check-in rows written while measuring: {written:,.0f} for {polls:,.0f} polls")
        for name, _, _ in routes:
            print(f"{name:<16}{med(name, 'rps'):>10.0f}{med(name, 'p50'):>9.2f}{med(name, 'p99'):>9.2f}"
                  f"{med(name, 'non2xx'):>9}{med(name, 'rps') / hello:>8.2f}")
        if args.load:
            print(f"\nlatency at {args.load:.0%} of each route's maximum, open loop (openloop.c: Poisson "
                  f"arrivals at the target rate on 64 connections, each request timed from when it was due)")
            print(f"{'route':<16}{'target':>10}{'req/s':>10}{'of max':>8}{'p50 ms':>9}{'p99 ms':>9}"
                  f"{'p99.9 ms':>10}{'late':>7}{'queued':>8}")
            for name, url, path in routes:
                target = args.load * med(name, "rps")
                # this machine's tail is noisy (a stall of tens of ms now and then, the bare hello app's
                # too): the run with the median p99 of --rounds runs is shown
                runs = sorted((at_load(url, path, target, args.duration, wenv) for _ in range(args.rounds)),
                              key=lambda r: r["p99"])
                r = runs[len(runs) // 2]
                print(f"{name:<16}{target:>10.0f}{r['rps']:>10.0f}{r['rps'] / med(name, 'rps'):>8.2f}"
                      f"{r['p50']:>9.2f}{r['p99']:>9.2f}{r['p999']:>10.2f}{r['late']:>7}{r['queued']:>8}"
                      f"   p99 of each run (connections per worker): "
                      f"{' '.join(format(x['p99'], '.2f') + ' (' + x['split'] + ')' for x in runs)}")
    finally:
        stack.stop(*procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
