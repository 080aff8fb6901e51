"""Start a gateway for a benchmark: `ota-gateway serve` on a free loopback port, on a data dir
(embedded PostgreSQL) or a given DATABASE_URL, waited for until /readyz answers."""
from __future__ import annotations

import os
import subprocess
import sys
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
