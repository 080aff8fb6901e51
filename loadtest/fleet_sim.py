"""Fleet simulator: devices that poll, download, install and report, as a rollout proceeds.

Memfault devices poll /api/v0/releases/latest, download the artifact (sha256 checked) and report
the new version on their next poll. DDI devices poll the hawkBit base resource, answer
configData when asked, fetch deploymentBase, download, send `proceeding` then `closed/success`
feedback (retrying a 503 as a real device would) and report the new version.

    .venv/bin/python loadtest/fleet_sim.py --devices 200 --duration 30          # own gateway + db
    .venv/bin/python loadtest/fleet_sim.py --url http://127.0.0.1:8080 --key KEY --token TOKEN \\
        --org demo-org --project demo-project --devices 500 --duration 60

Bounded by --duration (seconds) and --devices; binds/connects to 127.0.0.1 only by default.
Prints a progress line (a bar on a terminal) and a summary table. `FleetSim` is also used by the
chaos test (tests/test_chaos.py).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack  # noqa: E402


@dataclass
class SimDevice:
    serial: str
    hardware_version: str
    software_type: str
    version: str
    protocol: str  # "memfault" or "ddi"
    installed: list[str] = field(default_factory=list)


@dataclass
class Stats:
    polls: int = 0
    failed_polls: list = field(default_factory=list)      # (serial, status or exception name)
    updates: int = 0
    bad_downloads: list = field(default_factory=list)
    download_bytes: int = 0
    feedback_acked: list = field(default_factory=list)    # (serial, action id, execution, result)
    feedback_retries: int = 0
    reconnects: int = 0
    latencies: list = field(default_factory=list)

    def summary(self, devices: list[SimDevice], seconds: float) -> str:
        lat = sorted(self.latencies) or [0.0]
        versions = Counter(d.version for d in devices)
        rows = [("devices", len(devices)), ("seconds", f"{seconds:.1f}"), ("polls", self.polls),
                ("polls/s", f"{self.polls / max(seconds, 1e-9):.0f}"), ("failed polls", len(self.failed_polls)),
                ("poll p50 ms", f"{lat[len(lat) // 2] * 1000:.1f}"),
                ("poll p99 ms", f"{lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000:.1f}"),
                ("updates installed", self.updates), ("bad downloads", len(self.bad_downloads)),
                ("MB downloaded", f"{self.download_bytes / 1e6:.1f}"),
                ("DDI feedback acknowledged", len(self.feedback_acked)),
                ("DDI feedback retries (503)", self.feedback_retries),
                ("reconnects after a dropped connection", self.reconnects),
                ("versions now", ", ".join(f"{v}: {n}" for v, n in sorted(versions.items())))]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


class FleetSim:
    def __init__(self, base_url: str, project_key: str, devices: list[SimDevice], *, poll_interval: float = 0.5,
                 tenant: str = "default"):
        self.base = base_url.rstrip("/")
        self.key = project_key
        self.devices = devices
        self.poll_interval = poll_interval
        self.tenant = tenant
        self.stats = Stats()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, duration: float, progress=None) -> Stats:
        """Run every device until `duration` seconds pass or `stop()` is called."""
        deadline = time.monotonic() + duration
        tasks = [asyncio.create_task(self._device(d, deadline)) for d in self.devices]
        if progress:
            tasks.append(asyncio.create_task(self._progress(deadline, duration, progress)))
        await asyncio.gather(*tasks)
        return self.stats

    async def _progress(self, deadline: float, duration: float, show) -> None:
        while not self._stop.is_set() and time.monotonic() < deadline:
            show(1 - (deadline - time.monotonic()) / duration, self.stats)
            try:
                await asyncio.wait_for(self._stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
        show(1.0, self.stats)

    async def _device(self, d: SimDevice, deadline: float) -> None:
        # one keep-alive connection per device, like a real one
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1),
                                         timeout=aiohttp.ClientTimeout(total=30)) as s:
            await asyncio.sleep(random.random() * self.poll_interval)  # spread the first polls
            while not self._stop.is_set() and time.monotonic() < deadline:
                cycle = self._ddi_cycle if d.protocol == "ddi" else self._memfault_cycle
                try:
                    await cycle(s, d)
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    # a dropped connection (a worker restarting): a device retries at once on a new one
                    self.stats.reconnects += 1
                    try:
                        await cycle(s, d)
                    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                        self.stats.failed_polls.append((d.serial, type(e).__name__))
                try:
                    await asyncio.wait_for(self._stop.wait(), self.poll_interval)
                except asyncio.TimeoutError:
                    pass

    async def _get_poll(self, s, d, url, **kw):
        t0 = time.perf_counter()
        async with s.get(url, **kw) as r:
            body = await r.read()
            self.stats.latencies.append(time.perf_counter() - t0)
            self.stats.polls += 1
            if r.status >= 500 or r.status in (401, 403):
                self.stats.failed_polls.append((d.serial, r.status))
            return r.status, body

    async def _download(self, s, d, url: str, sha256: str, size: int, headers=None) -> bool:
        async with s.get(url, headers=headers) as r:
            data = await r.read()
        self.stats.download_bytes += len(data)
        ok = r.status == 200 and len(data) == size and hashlib.sha256(data).hexdigest() == sha256
        if not ok:
            self.stats.bad_downloads.append((d.serial, r.status))
        return ok

    async def _memfault_cycle(self, s, d: SimDevice) -> None:
        params = {"device_serial": d.serial, "hardware_version": d.hardware_version,
                  "software_type": d.software_type, "current_version": d.version}
        status, body = await self._get_poll(s, d, self.base + "/api/v0/releases/latest", params=params,
                                            headers={"Memfault-Project-Key": self.key})
        if status != 200:
            return
        import json

        rel = json.loads(body)
        art = rel["artifacts"][0]
        if await self._download(s, d, art["url"], art["sha256"], art["file_size"]):
            d.version = rel["version"]
            d.installed.append(rel["version"])
            self.stats.updates += 1

    def _ddi_base(self, d: SimDevice) -> str:
        return f"{self.base}/api/v0/hawkbit/{self.tenant}/controller/v1/{d.serial}"

    async def _ddi_write(self, s, d, method: str, url: str, payload: dict, auth: dict) -> bool:
        """A durable DDI write, retried on 503 like a device that keeps its report until acknowledged."""
        for attempt in range(20):
            async with s.request(method, url, json=payload, headers=auth) as r:
                await r.read()
                if r.status == 200:
                    return True
                if r.status != 503:
                    return False
            self.stats.feedback_retries += 1
            await asyncio.sleep(min(0.1 * 2 ** attempt, 2.0))
        return False

    async def _ddi_cycle(self, s, d: SimDevice) -> None:
        import json

        auth = {"Authorization": f"GatewayToken {self.key}"}
        base = self._ddi_base(d)
        status, body = await self._get_poll(s, d, base, headers=auth)
        if status != 200:
            return
        links = json.loads(body).get("_links", {})
        if "configData" in links:
            await self._ddi_write(s, d, "PUT", links["configData"]["href"], {"mode": "merge", "data": {
                "memfault__hardware_version": d.hardware_version, "memfault__software_type": d.software_type,
                "memfault__current_version": d.version}}, auth)
        if "deploymentBase" not in links:
            return
        async with s.get(links["deploymentBase"]["href"], headers=auth) as r:
            if r.status != 200:
                return
            dep = await r.json()
        action = dep["id"]
        chunk = dep["deployment"]["chunks"][0]
        art = chunk["artifacts"][0]
        href = (art["_links"].get("download-http") or art["_links"]["download"])["href"]
        fb = f"{base}/deploymentBase/{action}/feedback"
        if await self._ddi_write(s, d, "POST", fb, {"status": {"execution": "proceeding",
                                                                "result": {"finished": "none"}}}, auth):
            self.stats.feedback_acked.append((d.serial, int(action), "proceeding", "none"))
        if not await self._download(s, d, href, art["hashes"]["sha256"], art["size"], headers=auth):
            if await self._ddi_write(s, d, "POST", fb, {"status": {"execution": "closed",
                                                                    "result": {"finished": "failure"}}}, auth):
                self.stats.feedback_acked.append((d.serial, int(action), "closed", "failure"))
            return
        d.version = chunk["version"]
        if await self._ddi_write(s, d, "POST", fb, {"status": {"execution": "closed",
                                                                "result": {"finished": "success"}}}, auth):
            self.stats.feedback_acked.append((d.serial, int(action), "closed", "success"))
            d.installed.append(d.version)
            self.stats.updates += 1


def make_fleet(n: int, *, ddi_share: float = 0.5, software_type: str = "main", hardware: str = "mp",
               versions=("1.0.0",), prefix: str = "SIM") -> list[SimDevice]:
    rng = random.Random(n)
    return [SimDevice(f"{prefix}{i:06d}", hardware, software_type, rng.choice(list(versions)),
                      "ddi" if rng.random() < ddi_share else "memfault") for i in range(n)]


def _bar(fraction: float, stats: Stats) -> None:
    line = (f"polls {stats.polls:>8}  updates {stats.updates:>6}  failed {len(stats.failed_polls):>4}  "
            f"MB {stats.download_bytes / 1e6:>7.1f}")
    if sys.stderr.isatty():
        filled = int(fraction * 30)
        print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {fraction:>4.0%}  {line}", end="", file=sys.stderr, flush=True)
    else:
        print(f"{fraction:>4.0%}  {line}", file=sys.stderr, flush=True)


async def _own_stack(args) -> tuple[str, str, callable]:
    """Start a gateway on its own embedded PostgreSQL and activate 2.0.0 for the fleet on 1.0.0."""
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix="ota-sim-")
    key, token = "simkey00000000000000000000000000", "oat_sim_token"
    base, proc = await asyncio.to_thread(stack.serve, tmp, workers=args.workers, env={
        "OTA_ORG": "sim-org", "OTA_PROJECT": "sim", "OTA_ORG_TOKEN": token, "OTA_PROJECT_KEY": key})
    async with aiohttp.ClientSession() as s:
        await publish(s, base, token, "sim-org", "sim", "2.0.0", os.urandom(args.payload_kib * 1024))

    def cleanup() -> None:
        stack.stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return base, key, cleanup


async def publish(s: aiohttp.ClientSession, base: str, token: str, org: str, project: str, version: str,
                  content: bytes, *, software_type: str = "main", hardware: str = "mp", cohort: str = "default",
                  percent: int | None = None) -> None:
    """Upload a release the way memfault-cli does and activate it."""
    await stack.upload(s, base, token, org, project, version, content, software_type=software_type,
                       hardware=hardware)
    await stack.activate(s, base, token, org, project, version, cohort=cohort, software_type=software_type,
                         percent=percent)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running gateway (default: start one with its own database)")
    ap.add_argument("--key", help="project key (with --url)")
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--poll-interval", type=float, default=1.0)
    ap.add_argument("--ddi-share", type=float, default=0.5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--payload-kib", type=int, default=256)
    args = ap.parse_args()
    if args.devices > 20000 or args.duration > 3600:
        ap.error("at most 20000 devices and 3600 s")

    async def go() -> int:
        cleanup = None
        if args.url:
            base, key = args.url, args.key
            if not key:
                ap.error("--key is required with --url")
        else:
            base, key, cleanup = await _own_stack(args)
        try:
            devices = make_fleet(args.devices, ddi_share=args.ddi_share)
            sim = FleetSim(base, key, devices, poll_interval=args.poll_interval)
            t0 = time.monotonic()
            stats = await sim.run(args.duration, progress=_bar)
            print(file=sys.stderr)
            print(stats.summary(devices, time.monotonic() - t0))
            return 1 if stats.failed_polls or stats.bad_downloads else 0
        finally:
            if cleanup:
                cleanup()
    return asyncio.run(go())


if __name__ == "__main__":
    sys.exit(main())
