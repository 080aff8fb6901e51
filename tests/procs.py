"""A gateway run as a real `ota-gateway serve` subprocess, for end-to-end tests."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway.pgembed import free_port


class Gateway:
    def __init__(self, database_url: str, data_dir: str, workers: int = 1, env: dict | None = None,
                 code: str | None = None):
        """`code`: run the gateway package of another checkout (e.g. an old release), imported from
        there (PYTHONPATH and working directory) instead of this one."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DATABASE_URL": database_url, "OTA_PUBLIC_URL": self.url, "OTA_LOG_LEVEL": "WARNING",
               **(env or {}), **(code_env(code) if code else {})}
        # output goes to a file, not a pipe nobody reads while the test runs (a full pipe blocks)
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", str(self.port), "--workers", str(workers),
             "--data-dir", data_dir], env=env, cwd=code, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def worker_pids(self) -> set[int]:
        """The supervisor's live worker processes, read from /proc."""
        out = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid and fields[0] != "Z":
                out.add(int(stat.parent.name))
        return out

    def wait_ready(self, timeout: float = 30) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("gateway did not become ready")

    def __enter__(self) -> "Gateway":
        """Wait until it serves; a gateway that never does is stopped before the error propagates."""
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

    def stop(self) -> str:
        """SIGTERM, wait (bounded), and return everything the gateway printed."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.output()


def code_env(code: str) -> dict:
    """Environment under which `python -m gateway`, run in `code`, imports that checkout's gateway."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, (code, os.environ.get("PYTHONPATH"))))}


def memfault_cli(url: str, org: str, project: str, org_token: str, *args: str) -> str:
    """Run the real memfault-cli against a gateway; fails the test on a non-zero exit."""
    env = {**os.environ, "MEMFAULT_URL": url, "MEMFAULT_ORG": org, "MEMFAULT_PROJECT": project,
           "MEMFAULT_ORG_TOKEN": org_token}
    out = subprocess.run([str(Path(sys.executable).parent / "memfault"), *args], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr
