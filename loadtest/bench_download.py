"""Artifact delivery throughput: 8 concurrent clients downloading a 100 MB artifact for
--duration seconds from (a) the gateway itself (signed URL, uvloop workers), (b) nginx serving
the same file with sendfile, and (c) nginx in front of the gateway with X-Accel-Redirect (the
gateway checks the signature, nginx sends the bytes). wrk reports the bytes; all in one run.

    .venv/bin/python loadtest/bench_download.py [--size-mb 100] [--duration 10]
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
import tempfile
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import stack  # noqa: E402
from fleet_sim import publish  # noqa: E402

from gateway.pgembed import free_port  # noqa: E402

ORG, PROJECT, TOKEN, KEY = "dl-org", "dl", "oat_dl_token", "dlkey000000000000000000000000000"


def wrk_mbps(url: str, duration: int, connections: int) -> float:
    # wrk's default 2 s timeout drops a download the machine stalled (it counts as a socket error):
    # a slow answer is still a good one and its bytes count
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--timeout", "30s", url],
                         capture_output=True, text=True, timeout=duration + 60).stdout
    assert "Non-2xx" not in out and "Socket errors" not in out, out  # every byte counted is a good answer
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3}[unit] * (1.048576 if unit in ("MB", "GB") else 1)


def nginx_conf(root: Path, port: int, storage: Path, gateway_port: int | None) -> Path:
    proxy = ""
    if gateway_port:
        proxy = f"""
        location / {{ proxy_pass http://127.0.0.1:{gateway_port}; proxy_http_version 1.1;
                      proxy_set_header Connection ""; }}
        location /_artifacts/ {{ internal; alias {storage}/; }}"""
    else:
        proxy = f"""
        location /files/ {{ alias {storage}/; }}"""
    conf = root / f"nginx-{port}.conf"
    conf.write_text(f"""
worker_processes 2;
pid {root}/nginx-{port}.pid;
error_log {root}/nginx-{port}.err;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off; sendfile on; tcp_nopush on; keepalive_timeout 65;
    types {{ application/octet-stream bin; }}
    default_type application/octet-stream;
    upstream gw {{ server 127.0.0.1:{gateway_port or 1}; keepalive 16; }}
    server {{ listen 127.0.0.1:{port}; {proxy}
    }}
}}
""")
    return conf


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists() or not shutil.which("wrk"):
        print("needs nginx and wrk (apt-get install nginx wrk)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="ota-dl-"))
    tmp.chmod(0o755)  # the embedded PostgreSQL's user and nginx must reach inside
    procs = []
    try:
        env = {"OTA_ORG": ORG, "OTA_PROJECT": PROJECT, "OTA_ORG_TOKEN": TOKEN, "OTA_PROJECT_KEY": KEY}
        base, gw = stack.serve(str(tmp / "data"), env=env)
        procs.append(gw)
        content = os.urandom(args.size_mb * 1024 * 1024)
        sha = hashlib.sha256(content).hexdigest()

        async def prepare() -> str:
            async with aiohttp.ClientSession() as s:
                await publish(s, base, TOKEN, ORG, PROJECT, "1.0.0", content)
                async with s.get(base + "/api/v0/releases/latest/url", params={
                        "device_serial": "DL1", "hardware_version": "mp", "software_type": "main"},
                        headers={"Memfault-Project-Key": KEY}) as r:
                    return await r.text()
        url = asyncio.run(prepare())
        storage = tmp / "data" / "artifacts"
        assert (storage / sha[:2] / sha).exists()
        gw_port = int(base.rsplit(":", 1)[1])
        direct_port, front_port = free_port(), free_port()
        for port, gport in ((direct_port, None), (front_port, gw_port)):
            procs.append(subprocess.Popen([nginx, "-p", str(tmp), "-c", str(nginx_conf(tmp, port, storage, gport))],
                                          stderr=subprocess.DEVNULL))
        stack.wait_http(f"http://127.0.0.1:{direct_port}/files/{sha[:2]}/{sha}")
        results = {
            "nginx sendfile (reference)": wrk_mbps(f"http://127.0.0.1:{direct_port}/files/{sha[:2]}/{sha}",
                                                  args.duration, args.connections),
            "gateway itself (uvloop workers)": wrk_mbps(url, args.duration, args.connections),
        }
        # the gateway started without X-Accel-Redirect: restart it with it for the front-proxy run
        gw.terminate()
        gw.wait(60)
        base2, gw2 = stack.serve(str(tmp / "data"), env={**env, "OTA_ACCEL_REDIRECT": "/_artifacts/"})
        procs.append(gw2)
        procs.append(subprocess.Popen([nginx, "-p", str(tmp), "-c", str(nginx_conf(
            tmp, front2 := free_port(), storage, int(base2.rsplit(":", 1)[1])))], stderr=subprocess.DEVNULL))
        stack.wait_http(f"http://127.0.0.1:{front2}/healthz")
        signed = asyncio.run(_signed(base2)).split(base2, 1)[1]
        results["nginx + gateway (X-Accel-Redirect)"] = wrk_mbps(f"http://127.0.0.1:{front2}{signed}",
                                                                 args.duration, args.connections)
        ref = results["nginx sendfile (reference)"]
        print(f"\n{args.connections} concurrent downloads of {args.size_mb} MB, {args.duration}s each, same run")
        print(f"{'server':<40}{'MB/s':>10}{'vs nginx':>10}")
        for name, mbps in results.items():
            print(f"{name:<40}{mbps:>10.0f}{mbps / ref:>10.2f}")
    finally:
        stack.stop(*procs)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


async def _signed(base: str) -> str:
    async with aiohttp.ClientSession() as s:
        return await stack.signed_url(s, base, KEY, "DL2")


if __name__ == "__main__":
    sys.exit(main())
