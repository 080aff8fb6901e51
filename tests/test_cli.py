"""The `ota-gateway` management CLI against a running gateway subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ORG, ORG_TOKEN, PROJECT
from procs import Gateway, memfault_cli

CLI = [sys.executable, "-m", "gateway"]


@pytest.fixture(scope="module")
def gw(database_url, data_dir):
    with Gateway(database_url, data_dir) as g:
        yield g


def cli(gw, *args, ok=True):
    env = {**os.environ, "OTA_URL": gw.url, "OTA_TOKEN": ORG_TOKEN, "OTA_ORG": ORG, "OTA_PROJECT": PROJECT}
    out = subprocess.run(CLI + list(args), env=env, capture_output=True, text=True, timeout=60)
    assert (out.returncode == 0) is ok, out.stdout + out.stderr
    return out


def memfault(gw, *args):
    return memfault_cli(gw.url, ORG, PROJECT, ORG_TOKEN, *args)


def test_cli_end_to_end(gw, tmp_path):
    fw = tmp_path / "fw.bin"
    for v in ("1.0.0", "2.0.0"):
        fw.write_bytes(os.urandom(1000))
        memfault(gw, "upload-ota-payload", "--hardware-version", "mp", "--software-type", "main",
                 "--software-version", v, str(fw))
    assert "created cohort beta" in cli(gw, "cohorts", "create", "beta").stdout
    for i in range(4):
        cli(gw, "devices", "add", f"CLI{i}", "--hardware-version", "mp", "--cohort", "beta")
    out = cli(gw, "activate", "1.0.0", "--cohort", "beta").stdout
    assert "deployment" in out and "beta" in out
    # preview first: nothing changes; then apply exactly it with the token it printed
    out = cli(gw, "activate", "2.0.0", "--cohort", "beta", "--percent", "50", "--dry-run").stdout
    assert "dry run: 2 device(s) would move" in out and "1.0.0 x4" in out
    assert json.loads(cli(gw, "matrix", "--cohort", "beta", "--json").stdout)["staged_devices"] == 0
    token = out.split("--preview-token ")[1].split()[0]
    out = cli(gw, "activate", "2.0.0", "--cohort", "beta", "--percent", "50", "--preview-token", token).stdout
    assert "50%" in out and "staged now: 2/4" in out
    matrix = json.loads(cli(gw, "matrix", "--cohort", "beta", "--json").stdout)
    assert matrix["devices"] == 4 and matrix["staged_devices"] == 2
    text = cli(gw, "matrix", "--cohort", "beta").stdout
    assert "current \\ next" in text and "target version: 1.0.0" in text and "staged 50%" in text
    cli(gw, "devices", "override", "CLI0", "1.0.0")
    out = cli(gw, "inspect", "CLI0", "--software-type", "main", "--current-version", "2.0.0").stdout
    assert "-> 1.0.0 (reason: override)" in out
    cli(gw, "devices", "clear-override", "CLI0")
    out = cli(gw, "devices", "stage", "beta", "--limit", "1").stdout
    assert "3 of 4 staged" in out
    assert "dry run" in cli(gw, "devices", "move", "CLI3", "default", "--dry-run").stdout
    cli(gw, "devices", "move", "CLI3", "default")
    key = json.loads(cli(gw, "keys", "create", "--name", "beta-key", "--cohort-override", "beta", "--json").stdout)
    assert len(key["key"]) == 32
    assert "beta-key" in cli(gw, "keys", "list").stdout
    cli(gw, "keys", "revoke", str(key["id"]))
    assert "deactivated deployment" in cli(gw, "abort", "2.0.0", "--cohort", "beta").stdout
    releases = cli(gw, "releases", "list").stdout
    assert "2.0.0" in releases and "full" in releases
    cli(gw, "releases", "delete", "2.0.0")
    audit = cli(gw, "audit", "--limit", "100").stdout
    for action in ("cohort.create", "deployment.create", "device.override", "release.delete"):
        assert action in audit
    # failures: a clear message and a non-zero exit
    err = cli(gw, "releases", "delete", "1.0.0", ok=False).stderr
    assert "still active" in err and "HTTP 409" in err
    err = cli(gw, "activate", "9.9.9", "--cohort", "beta", ok=False).stderr
    assert "not found" in err
    err = cli(gw, "devices", "move", "CLI0", "nope", ok=False).stderr
    assert "nope" in err


def test_cli_errors_without_configuration(gw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTA_")}
    out = subprocess.run(CLI + ["cohorts", "list", "--url", gw.url, "--org", ORG, "--project", PROJECT], env=env,
                         capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "--token" in out.stderr
    out = subprocess.run(CLI + ["cohorts", "list", "--url", "http://127.0.0.1:9", "--token", "x", "--org", "a",
                                "--project", "b"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "cannot reach" in out.stderr


def test_cli_upload_prints_progress_lines_when_not_a_terminal(gw, tmp_path):
    fw = tmp_path / "big.bin"
    fw.write_bytes(os.urandom(3 * 1024 * 1024))
    out = cli(gw, "upload", str(fw), "--hardware-version", "mp", "--software-type", "cli-fw", "--version", "7.7.7",
              "--notes", "via ota-gateway", "--extra", "slot=a")
    assert "uploading big.bin: 100%" in out.stderr and "25%" in out.stderr  # plain lines, not a bar
    assert "release 7.7.7 (cli-fw) has a payload for mp" in out.stdout
    rel = json.loads(cli(gw, "releases", "get", "7.7.7", "--json").stdout)
    assert rel["notes"] == "via ota-gateway" and rel["artifacts"][0]["extra_info"] == {"slot": "a"}
    assert rel["artifacts"][0]["file_size"] == 3 * 1024 * 1024
    err = cli(gw, "upload", str(fw), "--hardware-version", "mp", "--software-type", "cli-fw", ok=False).stderr
    assert "--version" in err


class _Tty:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_progress_bar_on_a_terminal_and_lines_elsewhere():
    import io

    from gateway.progress import Progress, working

    tty = _Tty()
    p = Progress(1000, "up", stream=tty)
    for _ in range(10):
        p.update(100)
    p.close()
    assert "\r" in tty.text and "[" + "#" * 30 + "]" in tty.text and "100%" in tty.text
    plain = io.StringIO()
    p = Progress(1000, "up", stream=plain)
    for _ in range(10):
        p.update(100)
    lines = plain.getvalue().splitlines()
    # one line per 25 % step reached, never a carriage return
    assert [line.split("%")[0] for line in lines] == ["up: 10", "up: 30", "up: 50", "up: 80", "up: 100"]
    assert "\r" not in plain.getvalue()
    out = io.StringIO()
    with working("staging", stream=out):
        pass
    assert out.getvalue().splitlines()[0] == "staging..." and "done in" in out.getvalue()


def test_cli_says_when_a_change_waits_for_approval(gw):
    cli(gw, "cohorts", "create", "gated")
    cli(gw, "cohorts", "set", "gated", "--requires-approval", "on")
    cli(gw, "devices", "add", "GATED1", "--hardware-version", "mp", "--cohort", "gated")
    out = cli(gw, "devices", "move", "GATED1", "default").stdout
    assert "device.move request" in out and "waiting for approval" in out and "nothing has changed" in out
    listed = json.loads(cli(gw, "devices", "list", "--cohort", "gated", "--json").stdout)
    assert [d["device_serial"] for d in listed] == ["GATED1"]  # still there until someone approves
    pending = json.loads(cli(gw, "requests", "list", "--json").stdout)
    assert any(q["action"] == "device.move" and q["change"]["serial"] == "GATED1" for q in pending)
