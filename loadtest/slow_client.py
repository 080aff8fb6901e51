"""Slow cellular clients against the minimum-rate rule (OTA_MIN_TRANSFER_RATE over
OTA_TRANSFER_RATE_WINDOW): a device on NB-IoT / LTE-M that reads at a few kB/s and stalls for
tens of seconds must finish its download; one that stops for longer than the window is cut.

At full scale (the defaults: 500 B/s over 60 s) a 2 kB/s client reading 30 s then stalling 20 s
downloads a 1 MB artifact (about 15 minutes), and a client that stops after 64 KB is cut about a
window later. `--scale N` runs the same rule N times faster (rates x N, times / N), as
tests/test_transfers.py does. Prints the figures.

    .venv/bin/python loadtest/slow_client.py [--scale 1] [--size-kb 1024]
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


@dataclass
class Result:
    status: int = 0
    received: int = 0
    expected: int = -1
    seconds: float = 0.0
    sha256: str = ""
    ended: str = ""            # "complete", "closed by server", "timeout"

    @property
    def complete(self) -> bool:
        return self.ended == "complete" and self.received == self.expected


def _connect(url: str, rcvbuf: int) -> tuple[socket.socket, str]:
    u = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # a device's small receive buffer: the server's send queue, not ours, holds what we have not read
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((u.hostname, u.port or 80))
    target = u.path + ("?" + u.query if u.query else "")
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n\r\n".encode())
    return sock, target


def _head(sock: socket.socket) -> tuple[int, int, bytes]:
    """(status, content length, body bytes read along with the head)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the answer's head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(v) for k, _, v in (line.partition(":") for line in lines[1:])
                   if k.strip().lower() == "content-length"), -1)
    return int(lines[0].split()[1]), length, rest


def slow_download(url: str, *, rate: float, burst: float, stall: float, stop_after: int | None = None,
                  stop_for: float = 0.0, rcvbuf: int = 8192, timeout: float = 3600) -> Result:
    """GET `url` reading `rate` B/s for `burst` s, then nothing for `stall` s, again and again;
    with `stop_after`, nothing for `stop_for` s once that many bytes are in, then the rest at once
    (to learn whether the server cut us meanwhile). Bounded by `timeout` seconds."""
    start = time.monotonic()
    sock, _ = _connect(url, rcvbuf)
    res, digest = Result(), hashlib.sha256()
    try:
        res.status, res.expected, first = _head(sock)
        digest.update(first)
        res.received = len(first)
        done_phases, phase_start = 0.0, time.monotonic()  # reading seconds of the finished bursts
        while time.monotonic() - start < timeout and res.received != res.expected:
            now = time.monotonic()
            if stop_after is not None and res.received >= stop_after:
                time.sleep(stop_for)
                stop_after, rate = None, 1e12  # the rest as fast as it comes
                continue
            if now - phase_start >= burst:
                done_phases += burst
                time.sleep(stall)
                phase_start = time.monotonic()
                continue
            target = rate * (done_phases + now - phase_start)
            allowance = int(min(target, stop_after if stop_after is not None else target)) - res.received
            if allowance <= 0:
                time.sleep(0.01)
                continue
            try:
                chunk = sock.recv(min(allowance, 16384))
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                res.ended = "closed by server"
                break
            digest.update(chunk)
            res.received += len(chunk)
        if not res.ended:
            res.ended = "complete" if res.received == res.expected else "timeout"
    finally:
        sock.close()
    res.seconds = time.monotonic() - start
    res.sha256 = digest.hexdigest()
    return res


def run_in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, list]:
    """Start `fn` in a thread; the list gets its result."""
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn(*args, **kwargs)), daemon=True)
    t.start()
    return t, out


def main() -> int:
    import stack
    from fleet_sim import publish

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="run the rule this many times faster")
    ap.add_argument("--size-kb", type=int, default=1024)
    args = ap.parse_args()
    if not 1 <= args.scale <= 1000 or not 16 <= args.size_kb <= 65536:
        ap.error("--scale from 1 to 1000, --size-kb from 16 to 65536")
    k = args.scale
    min_rate, window = 500 * k, 60 / k
    org, project, token, key = "slow-org", "slow", "oat_slow_token", "slowkey0000000000000000000000000"
    tmp = Path(tempfile.mkdtemp(prefix="ota-slow-"))
    tmp.chmod(0o755)  # the embedded PostgreSQL's user must reach inside
    gw = None
    try:
        base, gw = stack.serve(str(tmp / "data"), workers=1, env={
            "OTA_ORG": org, "OTA_PROJECT": project, "OTA_ORG_TOKEN": token, "OTA_PROJECT_KEY": key,
            "OTA_MIN_TRANSFER_RATE": str(min_rate), "OTA_TRANSFER_RATE_WINDOW": str(window)})
        content = os.urandom(args.size_kb * 1024)
        url = asyncio.run(_publish(publish, base, org, project, token, key, content))
        print(f"rule: {min_rate:g} B/s over {window:g} s; artifact {len(content)} bytes", flush=True)
        steady = run_in_thread(slow_download, url, rate=2000 * k, burst=30 / k, stall=20 / k,
                               timeout=3 * len(content) / (1000 * k) + 60)
        stopped = run_in_thread(slow_download, url, rate=2000 * k, burst=30 / k, stall=20 / k,
                                stop_after=64 * 1024, stop_for=2 * window, timeout=3 * window + 60 / k)
        for name, (thread, out) in (("stops after 64 KB", stopped), ("2 kB/s, 20 s stalls", steady)):
            thread.join()
            r = out[0]
            print(f"{name:<22} status {r.status}  {r.received:>8} of {r.expected} bytes  {r.seconds:7.1f} s  "
                  f"{r.received / r.seconds:7.0f} B/s  {r.ended}"
                  + ("  sha256 ok" if r.sha256 == hashlib.sha256(content).hexdigest() else ""), flush=True)
        print(f"cut by the gateway: {cut_count(base):g}")
    finally:
        if gw is not None:
            stack.stop(gw)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def cut_count(base: str) -> float:
    """ota_gateway_slow_transfers_cut_total of the gateway, summed over its labels."""
    import urllib.request

    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("ota_gateway_slow_transfers_cut_total"))


async def _publish(publish, base, org, project, token, key, content) -> str:
    import aiohttp

    import stack

    async with aiohttp.ClientSession() as s:
        await publish(s, base, token, org, project, "1.0.0", content)
        return await stack.signed_url(s, base, key, "SLOW1")


if __name__ == "__main__":
    sys.exit(main())
