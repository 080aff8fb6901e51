"""Start a gateway for a benchmark: `ota-gateway serve` on a free loopback port, on a data dir
(embedded PostgreSQL) or a given DATABASE_URL, waited for until /readyz answers."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gateway.pgembed import free_port  # noqa: E402


def serve(data_dir: str, *, workers: int = 2, database_url: str | None = None,
          env: dict | None = None, timeout: float = 120) -> tuple[str, subprocess.Popen]:
    """(base URL, process) of a ready gateway; the caller terminates the process."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    full_env = {**os.environ, "OTA_PUBLIC_URL": base, "OTA_LOG_LEVEL": "WARNING", **(env or {})}
    full_env.pop("DATABASE_URL", None)
    if database_url:
        full_env["DATABASE_URL"] = database_url
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port), "--workers",
                             str(workers), "--data-dir", data_dir], env=full_env)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2):
                return base, proc
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.terminate()
                raise SystemExit("the gateway did not become ready") from None
            time.sleep(0.1)


@contextlib.contextmanager
def scratch_dir(data_dir: str | None, prefix: str):
    """`data_dir` when given (kept), else a new temporary directory (removed afterwards)."""
    if data_dir:
        yield data_dir
        return
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def children(pid: int) -> list[int]:
    """The direct child processes of `pid` (Linux /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # exited meanwhile
            pass
    return sorted(out)


def _is_postgres(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().startswith("postgres")
    except OSError:
        return False


def workers(gateway_pid: int) -> list[int]:
    """The worker processes of a gateway started by `serve` (its embedded PostgreSQL is a child too)."""
    return [p for p in children(gateway_pid) if not _is_postgres(p)]


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def pin(pid: int, server_cpus: set[int], other_cpus: set[int]) -> None:
    """Put a gateway's workers (and every thread of theirs) on `server_cpus` and the PostgreSQL
    it started on `other_cpus`, so that a load generator pinned there does not take the
    workers' cores."""
    for p in process_tree(pid):
        cpus = other_cpus if _is_postgres(p) else server_cpus
        try:
            for task in Path(f"/proc/{p}/task").glob("*"):
                os.sched_setaffinity(int(task.name), cpus)
        except OSError:  # exited meanwhile
            pass


def wait_http(url: str, timeout: float = 30) -> None:
    """Wait (bounded) until `url` answers at all."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(url) from None
            time.sleep(0.1)


def metric(base: str, name: str) -> float:
    """One unlabelled sample of the gateway's /metrics (all workers aggregated); 0 when absent."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf"^{re.escape(name)}(?:{{}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def stop(*procs: subprocess.Popen) -> None:
    """Terminate processes and wait for them (bounded), killing what does not exit."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def upload(s, base: str, token: str, org: str, project: str, version: str, content: bytes, *,
                 software_type: str = "main", hardware: str = "mp", must_pass_through: bool = False,
                 accept: tuple[int, ...] = (200, 201, 409)) -> int:
    """Upload a payload the way memfault-cli does (upload slot, signed PUT, ota_payload)."""
    import hashlib

    p = f"{base}/api/v0/organizations/{org}/projects/{project}"
    auth = {"Authorization": f"Bearer {token}"}
    async with s.post(p + "/upload", json={"kind": "OTA_PAYLOAD", "size": len(content)}, headers=auth) as r:
        up = (await r.json())["data"]
    async with s.put(up["upload_url"], data=content) as r:
        assert r.status == 200, await r.text()
    async with s.post(p + "/releases/ota_payload", headers=auth, json={
            "file": {"token": up["token"], "md5": hashlib.md5(content).hexdigest(), "name": f"fw-{version}.bin"},
            "software_version": {"version": version, "software_type": software_type},
            "hardware_version": hardware, "must_pass_through": must_pass_through}) as r:
        assert r.status in accept, await r.text()
        return r.status


async def activate(s, base: str, token: str, org: str, project: str, version: str, *, cohort: str = "default",
                   software_type: str | None = None, percent: int | None = None) -> dict:
    """Activate a release on a cohort (staged below 100 %); returns the deployment."""
    body = {"type": "normal", "release": version, "cohort": cohort}
    if software_type:
        body["software_type"] = software_type
    if percent is not None and percent < 100:
        body.update(type="staged_rollout", rollout_percent=percent)
    async with s.post(f"{base}/api/v0/organizations/{org}/projects/{project}/deployments", json=body,
                      headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status in (200, 201, 202), await r.text()
        return (await r.json())["data"]


async def signed_url(s, base: str, key: str, serial: str, *, hardware: str = "mp", software_type: str = "main") -> str:
    """The signed download URL a Memfault device `serial` is answered (/latest/url)."""
    async with s.get(base + "/api/v0/releases/latest/url", params={
            "device_serial": serial, "hardware_version": hardware, "software_type": software_type},
            headers={"Memfault-Project-Key": key}) as r:
        return await r.text()
