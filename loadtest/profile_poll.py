"""Profile of the poll path: py-spy samples one gateway worker while wrk drives a device route,
then prints where the worker's time goes, by module group and by function (self time).

    .venv/bin/python loadtest/profile_poll.py [--route url|latest|ddi] [--duration 10] [--data-dir /tmp/ota-1m]

Starts its own embedded PostgreSQL and a one-worker gateway on 127.0.0.1 (seeded like
bench_poll.py). Needs `py-spy` (`.venv/bin/pip install -e .[bench]`) and permission to ptrace.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import bench_poll  # noqa: E402
import stack  # noqa: E402

ROUTES = {"url": "/api/v0/releases/latest/url", "latest": "/api/v0/releases/latest", "ddi": "ddi"}
# where a sampled leaf frame's file lives decides its group
GROUPS = [("gateway/", "gateway (our code)"), ("aiohttp/", "aiohttp"), ("multidict/", "multidict/yarl"),
          ("yarl/", "multidict/yarl"), ("uvloop/", "uvloop / asyncio"), ("asyncio/", "uvloop / asyncio"),
          ("asyncpg/", "asyncpg")]
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")


def _frame(text: str) -> tuple[str, str]:
    m = _FRAME.match(text)
    return (m.group("func"), m.group("file")) if m else (text, "")


def summarize(raw: str, top: int) -> None:
    """Print self-time by group and by function, and inclusive time of our handlers."""
    by_group: collections.Counter = collections.Counter()
    by_func: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not stack_text or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack_text.split(";") if f]
        if not frames or frames[0][0].startswith("process "):
            frames = frames[1:]
        if not frames:
            continue
        total += n
        func, file = frames[-1]
        by_group[next((g for marker, g in GROUPS if marker in file), "other (C, stdlib, idle)")] += n
        by_func[f"{func} ({'/'.join(Path(file).parts[-2:]) if file else '?'})"] += n
        for f, file_ in {(f, fl) for f, fl in frames if "gateway/" in fl}:
            inclusive[f"{f} ({Path(file_).name})"] += n
    if not total:
        print("no samples")
        return
    print(f"\n{total} samples; self time by group:")
    for g, n in by_group.most_common():
        print(f"  {n / total:6.1%}  {g}")
    print(f"\nself time, top {top} functions:")
    for f, n in by_func.most_common(top):
        print(f"  {n / total:6.1%}  {f}")
    print("\ninclusive time of gateway functions:")
    for f, n in inclusive.most_common(top):
        print(f"  {n / total:6.1%}  {f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--route", choices=sorted(ROUTES), default="url")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=5, help="seconds of unmeasured polling first")
    ap.add_argument("--raw", help="also keep py-spy's collapsed stacks in this file")
    ap.add_argument("--data-dir", help="a data dir seeded by loadtest/seed.py (its 'bench' project): no seeding")
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not shutil.which("wrk") or not os.path.exists(spy):
        print("wrk and py-spy are required: apt-get install wrk; .venv/bin/pip install -e .[bench]",
              file=sys.stderr)
        return 2
    with stack.scratch_dir(args.data_dir, "ota-profile-") as tmp, tempfile.TemporaryDirectory() as scratch:
        base, gw = stack.serve(tmp, workers=1, env=bench_poll.BOOTSTRAP)
        try:
            if not args.data_dir:
                asyncio.run(bench_poll.seed(base))
            wenv = {"OTA_KEY": bench_poll.KEY, "OTA_DEVICES": str(args.devices)}
            path = ROUTES[args.route]
            bench_poll.wrk(base, path, args.warmup, 64, wenv)  # warm-up: the fleet registers, caches fill
            [pid] = stack.workers(gw.pid)
            out = os.path.join(scratch, "profile.txt")
            spy_proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", str(args.rate), "--duration",
                                         str(args.duration), "--format", "raw", "--output", out, "--nonblocking"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            result = bench_poll.wrk(base, path, args.duration, 64, wenv)
            spy_proc.wait(args.duration + 30)
        finally:
            stack.stop(gw)
        print(f"route {path}, 1 worker: {result['rps']:.0f} req/s while sampled (p50 {result['p50']:.2f} ms)")
        raw = Path(out).read_text() if os.path.exists(out) else ""
        if args.raw:
            Path(args.raw).write_text(raw)
        summarize(raw, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
