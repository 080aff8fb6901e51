"""The project as a user installs it: a wheel built from the source tree, installed into a fresh
virtual environment (its dependencies from the package index pip is set up with), and that
environment's `ota-gateway serve` started on an embedded PostgreSQL, as in the README's quick
start. It must become ready, take the bootstrap organization, token and project key from the
environment, accept a release and answer Memfault polls for it. This is what the rest of the
suite, which runs from the source tree, cannot see: that the package data (the schema, the
dashboard's templates) and the console script are in the wheel and the declared dependencies
are enough."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gateway import config
from gateway.pgembed import free_port

ROOT = Path(__file__).resolve().parent.parent
# what the build reads (pyproject.toml's readme and packages); copied, so that the build's
# build/ and *.egg-info land in a scratch directory, not in the working tree
SOURCES = ("pyproject.toml", "README.md", "gateway")
ORG, PROJECT, ORG_TOKEN, KEY = "wheel-org", "wheel-project", "oat_wheel_token_0123456789", "0123456789abcdef" * 2


def run(*args, **kwargs) -> None:
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)
    assert out.returncode == 0, f"{' '.join(map(str, args))}:\n{out.stdout}\n{out.stderr}"


@pytest.fixture(scope="module")
def venv():
    scratch = Path(tempfile.mkdtemp(prefix="ota-wheel-"))
    try:
        src = scratch / "src"
        src.mkdir()
        for name in SOURCES:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(ROOT / name, src / name)
        t0 = time.monotonic()
        pip = [sys.executable, "-m", "pip", "--quiet"]
        run(*pip, "wheel", "--no-deps", "-w", scratch / "dist", src)  # a path, never a name pip could look up
        wheel, = (scratch / "dist").glob("ota_gateway-*.whl")
        t1 = time.monotonic()
        run(sys.executable, "-m", "venv", "--without-pip", scratch / "venv")
        python = scratch / "venv" / "bin" / "python"
        run(*pip, "--python", python, "install", wheel)
        print(f"wheel built in {t1 - t0:.1f}s, installed with its dependencies in {time.monotonic() - t1:.1f}s")
        yield scratch / "venv"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def call(method: str, url: str, body=None, headers=None, data: bytes | None = None) -> tuple[int, dict, bytes]:
    if body is not None:
        data = json.dumps(body).encode()
        headers = {**(headers or {}), "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_the_installed_wheel_serves(venv):
    t0 = time.monotonic()
    bin_dir = venv / "bin"
    # the installed package, not the source tree's
    where = subprocess.run([bin_dir / "python", "-c", "import gateway; print(gateway.__file__)"], cwd="/",
                           capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")})
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
    # in /tmp, not pytest's tmp_path: the embedded cluster runs as `postgres` when we are root
    # (gateway/pgembed.py) and must reach its data directory
    data = Path(tempfile.mkdtemp(prefix="ota-wheel-data-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in config.BY_ENV and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OTA_ORG=ORG, OTA_PROJECT=PROJECT, OTA_ORG_TOKEN=ORG_TOKEN, OTA_PROJECT_KEY=KEY,
               OTA_LOG_LEVEL="WARNING", OTA_PG_SHARED_BUFFERS="32MB")
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([bin_dir / "ota-gateway", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--data-dir", data, "--workers", "1"], cwd=data, env=env, stdout=log,
                            stderr=subprocess.STDOUT)

    def output() -> str:
        log.seek(0)
        return log.read().decode(errors="replace")

    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"ota-gateway exited {proc.returncode}:\n{output()}"
            try:
                status, _, body = call("GET", base + "/readyz")
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "not ready within 60 s:\n" + output()
            time.sleep(0.1)
        assert json.loads(body) == {"database": True, "mirror_loaded": True, "notifications": True}

        # a release through the management API with the bootstrap org token, as memfault-cli uploads
        auth = {"Authorization": f"Bearer {ORG_TOKEN}"}
        api = f"{base}/api/v0/organizations/{ORG}/projects/{PROJECT}"
        firmware = os.urandom(3000)
        status, _, body = call("POST", api + "/upload", {"kind": "OTA_PAYLOAD", "size": len(firmware)}, auth)
        assert status == 200, body
        upload = json.loads(body)["data"]
        assert call("PUT", upload["upload_url"], data=firmware)[0] == 200
        status, _, body = call("POST", api + "/releases/ota_payload", {
            "file": {"token": upload["token"], "md5": hashlib.md5(firmware).hexdigest(), "name": "fw.bin"},
            "software_version": {"version": "1.0.0", "software_type": "fw"}, "hardware_version": "mp",
            "must_pass_through": False, "notes": ""}, auth)
        assert status == 201, body
        status, _, body = call("POST", api + "/deployments",
                               {"type": "normal", "release": "1.0.0", "cohort": "default"}, auth)
        assert status in (200, 201), body

        # Memfault polls with the bootstrap project key
        poll = f"{base}/api/v0/releases/latest/url?device_serial=W1&hardware_version=mp&software_type=fw"
        deadline = time.monotonic() + 10
        while (answer := call("GET", poll + "&current_version=0.0.1", headers={"Memfault-Project-Key": KEY}))[0] \
                != 200 and time.monotonic() < deadline:  # the mirror reloads on NOTIFY
            time.sleep(0.05)
        status, _, url = answer
        assert status == 200, url
        status, _, downloaded = call("GET", url.decode())
        assert status == 200 and downloaded == firmware
        status, headers, _ = call("GET", poll + "&current_version=1.0.0", headers={"Memfault-Project-Key": KEY})
        assert status == 204 and headers["memfault-reason"] == "latest"
        assert call("GET", poll, headers={"Memfault-Project-Key": "f" * 32})[0] == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out = output()
        stopped = not (data / "pg" / "postmaster.pid").exists()
        shutil.rmtree(data, ignore_errors=True)
    assert proc.returncode == 0, out
    assert stopped, "the embedded PostgreSQL is still running"
    print(f"installed gateway: ready, a release and polls in {time.monotonic() - t0:.1f}s")
