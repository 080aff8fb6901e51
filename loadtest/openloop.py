"""Build and run openloop.c, the open-loop load generator: requests at a fixed Poisson rate on
keep-alive connections, latency measured from each request's scheduled time (no coordinated
omission).

    import openloop
    r = openloop.run("127.0.0.1", port, rate=5000, seconds=10, mode="hello", cpus={1})
    r["p99_ms"], r["rps"], r["late_sends"]

The binary is compiled on first use into loadtest/.build/ and again whenever openloop.c is newer.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "openloop.c"
BUILD_DIR = HERE / ".build"
BINARY = BUILD_DIR / "openloop"
MODES = ("url", "latest", "ddi", "hello")


def build() -> str:
    """Path of the compiled generator, compiling it first if missing or older than the source."""
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return str(BINARY)
    cc = shlex.split(os.environ["CC"]) if os.environ.get("CC") else None
    if not cc:
        found = next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
        if not found:
            raise RuntimeError(f"no C compiler (cc, gcc or clang) found to build {SOURCE}: "
                               "install one (apt-get install gcc) or set CC")
        cc = [found]
    BUILD_DIR.mkdir(exist_ok=True)
    tmp = BUILD_DIR / f"openloop.{os.getpid()}.tmp"
    try:
        out = subprocess.run([*cc, "-O2", "-Wall", "-Wextra", "-o", str(tmp), str(SOURCE), "-lm"],
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"compiling {SOURCE} failed:\n{out.stderr}")
        os.replace(tmp, BINARY)  # atomic: a concurrent run never sees a half-written binary
    finally:
        tmp.unlink(missing_ok=True)
    return str(BINARY)


def _value(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def run(host: str, port: int, rate: float, seconds: float, connections: int = 64, warmup: float = 2,
        mode: str = "url", devices: int = 100_000, key: str = "", cpus: set[int] | None = None) -> dict:
    """Run the generator at `rate` req/s for `warmup` + `seconds` seconds and return its report:
    target_rps, sent, completed, rps, p50_ms, p90_ms, p99_ms, p999_ms, max_ms, mean_ms,
    status_2xx..status_5xx, errors, late_sends, scheduled, queued_sends, send_lag_p50_us,
    send_lag_p99_us (see openloop.c). `cpus`: pin the generator to these cores."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    cmd = [build(), "-r", str(rate), "-d", str(seconds), "-c", str(connections), "-w", str(warmup),
           "-p", mode, "-n", str(devices)]
    if key:
        cmd += ["-k", key]
    cmd += [host, str(port)]
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    # the generator stops on its own after at most 1 s of connecting + warmup + seconds
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=warmup + seconds + 30, preexec_fn=pin)
    if out.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited with {out.returncode}:\n{out.stderr}")
    result = {}
    for line in out.stdout.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            result[k.strip()] = _value(v.strip())
    if "p99_ms" not in result:
        raise RuntimeError(f"no report from {shlex.join(cmd)}:\n{out.stdout}\n{out.stderr}")
    return result
