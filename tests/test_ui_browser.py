"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a gateway
subprocess: log in, see a release uploaded through the API, activate it at 10 %, check the version
matrix cell by cell against what polling devices then receive, inspect a device, and check that a
viewer cannot activate. Screenshots go to the test's tmp_path; the matrix one also to docs/."""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from conftest import ORG, ORG_TOKEN, PROJECT, PROJECT_KEY

from procs import Gateway

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
DOCS = Path(__file__).resolve().parent.parent / "docs"
P = f"/api/v0/organizations/{ORG}/projects/{PROJECT}"
SW, HW = "brfw", "mp"


def _browser_or_skip():
    """Playwright's sync API, or a skip with the reason (a failure in CI, where it must run)."""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason, sync_playwright = "the playwright package is not installed (pip install -e '.[test]')", None
    if reason is None and not os.access(CHROMIUM, os.X_OK):
        reason = f"{CHROMIUM} is missing (apt-get install chromium, or `make test-deps` as root)"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser test must run in CI: {reason}")
        pytest.skip(reason)
    return sync_playwright


class Api:
    """Just enough of the REST API over urllib: the browser test is synchronous."""

    def __init__(self, base: str):
        self.base = base

    def call(self, method: str, path: str, body=None, *, data: bytes | None = None, token: str = ORG_TOKEN,
             headers: dict | None = None):
        hdrs = {"Authorization": f"Bearer {token}", **(headers or {})}
        if body is not None:
            data, hdrs["Content-Type"] = json.dumps(body).encode(), "application/json"
        url = path if path.startswith("http") else self.base + path
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw and r.headers.get_content_type() == "application/json"
                                  else raw)
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def upload(self, version: str, content: bytes) -> dict:
        """Upload a payload like memfault-cli (upload, PUT, ota_payload); the release's JSON."""
        status, up = self.call("POST", P + "/upload", {"kind": "OTA_PAYLOAD", "size": len(content)})
        assert status == 200, up
        status, _ = self.call("PUT", up["data"]["upload_url"], data=content, headers={"Authorization": ""})
        assert status == 200
        status, rel = self.call("POST", P + "/releases/ota_payload", {
            "file": {"token": up["data"]["token"], "md5": hashlib.md5(content).hexdigest(), "name": "fw.bin"},
            "software_version": {"version": version, "software_type": SW}, "hardware_version": HW, "notes": ""})
        assert status == 201, rel
        return rel["data"]

    def poll(self, serial: str, current: str) -> str:
        """Poll as a device; what it is offered ('(no update)' on 204), as the matrix names it."""
        q = urllib.parse.urlencode({"device_serial": serial, "hardware_version": HW, "software_type": SW,
                                    "current_version": current})
        status, body = self.call("GET", "/api/v0/releases/latest?" + q, headers={"Memfault-Project-Key": PROJECT_KEY})
        assert status in (200, 204), body
        return body["version"] if status == 200 else "(no update)"


def _wait(predicate, what: str, timeout: float = 20.0):
    """Bounded wait for something the gateway does in the background (write-behind check-ins)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def gateway(database_url, data_dir):
    gw = Gateway(database_url, data_dir, env={"OTA_FLUSH_INTERVAL": "0.2"})
    try:
        gw.wait_ready()
        yield gw
    finally:
        out = gw.stop()
        assert gw.proc.returncode == 0, out


def test_dashboard_in_a_real_browser(gateway, tmp_path):
    sync_playwright = _browser_or_skip()
    t0 = time.monotonic()
    api = Api(gateway.url)
    ui = f"{gateway.url}/ui/p/{PROJECT}"

    # the fleet: 1.0.0 is live; devices on 0.9.0 and 1.0.0 register themselves by polling
    api.upload("1.0.0", os.urandom(3000))
    rel2 = api.upload("2.0.0", os.urandom(4000))
    status, _ = api.call("POST", P + "/deployments", {"type": "normal", "release": "1.0.0", "cohort": "default"})
    assert status == 201
    rng = random.Random(9)
    fleet = {f"BRW{i:03d}": rng.choice(["0.9.0", "1.0.0"]) for i in range(40)}
    for serial, current in fleet.items():
        api.poll(serial, current)

    def registered():
        status, body = api.call("GET", P + "/devices?per_page=100")
        return status == 200 and sum(1 for d in body["data"] if d["software_versions"].get(SW)) == len(fleet)
    _wait(registered, "the check-ins of 40 devices")

    with sync_playwright() as pw:
        # a fresh user-data dir per run, under the test's own folder
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1280, "height": 860})
        external: list[str] = []
        context.on("request", lambda req: external.append(req.url) if not req.url.startswith(gateway.url)
                   and not req.url.startswith("data:") else None)
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(15_000)

        def shot(name: str) -> None:
            page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)

        # log in with the org token: the release uploaded through the API is listed
        page.goto(gateway.url + "/ui/")
        assert page.url.startswith(gateway.url + "/ui/login")
        page.fill("input[name=secret]", ORG_TOKEN)
        page.click("button[type=submit].primary")
        page.wait_for_url(f"{ui}/releases")
        row = page.locator('#releases tr[data-release="2.0.0"]')
        assert row.count() == 1 and "Full" in row.inner_text()
        shot("01-releases")

        # activate 2.0.0 at 10 %, through the confirmation step
        row.locator("a").click()
        page.wait_for_url(f"{ui}/releases/{rel2['id']}")
        assert rel2["artifacts"][0]["sha256"] in page.locator("#payloads").inner_text()
        page.select_option("#activate select[name=cohort]", "default")
        page.fill("#activate input[name=percent]", "10")
        page.click("#activate button[type=submit]")
        assert "staged rollout to 10 %" in page.locator(".confirm .summary").inner_text()
        shot("02-confirm")
        page.click(".confirm button[value=yes]")
        assert "Done" in page.locator(".flash.ok").inner_text()
        status, deps = api.call("GET", P + "/deployments?status=active&cohort=default")
        assert [(d["release"]["version"], d["rollout_percent"]) for d in deps["data"]] == [("2.0.0", 10), ("1.0.0", 100)]

        # the matrix, cell by cell, against what the devices receive when they poll now
        page.goto(f"{ui}/cohorts/default?software_type={SW}")
        cells = page.eval_on_selector_all(
            "#matrix td.cell", "els => els.map(e => [e.dataset.row, e.dataset.col, Number(e.dataset.count)])")
        shown = {(r, c): n for r, c, n in cells if n}
        received = Counter((current, api.poll(serial, current)) for serial, current in fleet.items())
        assert shown == dict(received), (shown, received)
        assert page.inner_text("#staged") == "4" and page.inner_text("#devices") == "40"  # round(40 x 10 %)
        assert received[("1.0.0", "(no update)")] > 0 and sum(n for (_, c), n in received.items() if c == "2.0.0") == 4
        assert page.inner_text("#target") == "1.0.0" and page.inner_text("#staged-target") == "2.0.0"
        head = page.inner_text('#matrix th[data-col="2.0.0"]')
        assert "Full" in head and "10 %" in head
        page.screenshot(path=str(tmp_path / "03-matrix.png"), full_page=True)
        if os.environ.get("OTA_REFRESH_DOCS"):  # the README's picture; a test run leaves the checkout alone
            DOCS.mkdir(exist_ok=True)
            shutil.copyfile(tmp_path / "03-matrix.png", DOCS / "matrix.png")

        # inspect a staged device: the page says what a poll answers, and why
        staged = next(s for s, cur in fleet.items() if api.poll(s, cur) == "2.0.0")
        page.goto(f"{ui}/devices")
        page.fill("#device-search input[name=serial]", staged)
        page.click("#device-search button")
        page.wait_for_url(f"{ui}/devices/{staged}")
        entry = page.locator(f'.inspect[data-software-type="{SW}"] .proto-memfault')
        assert entry.locator(".next").inner_text() == "2.0.0"
        assert entry.locator(".reason").inner_text() == "full"
        shot("04-inspect")

        # the activation is in the audit log, as the API wrote it
        page.goto(f"{ui}/audit?action=deployment.create")
        assert "token:bootstrap" in page.locator('#audit tr[data-action="deployment.create"]').first.inner_text()

        # a viewer sees no activation controls, and a forged form post is refused with a message
        status, tok = api.call("POST", f"/api/v0/organizations/{ORG}/tokens", {"name": "browser-viewer",
                                                                                "role": "viewer"})
        assert status == 201
        page.click("form.who button")
        page.wait_for_url(gateway.url + "/ui/login")
        page.fill("input[name=secret]", tok["data"]["token"])
        page.click("button[type=submit].primary")
        page.wait_for_url(f"{ui}/releases")
        page.goto(f"{ui}/releases/{rel2['id']}")
        assert page.locator("#activate").count() == 0
        page.goto(f"{ui}/cohorts/default?software_type={SW}")
        assert page.locator("#active button.danger").count() == 0
        page.evaluate("""([action, releaseId]) => {
            const f = document.createElement('form');
            f.method = 'post'; f.action = action;
            const add = (k, v) => { const i = document.createElement('input'); i.type = 'hidden'; i.name = k;
                                    i.value = v; f.appendChild(i); };
            add('_csrf', document.querySelector('form.who input[name=_csrf]').value);
            add('release_id', releaseId); add('cohort', 'default'); add('percent', ''); add('confirm', 'yes');
            document.body.appendChild(f); f.submit();
        }""", [f"/ui/p/{PROJECT}/deployments", str(rel2["id"])])
        page.wait_for_selector(".error .message")
        assert page.inner_text(".error h1") == "403"
        assert "needs the editor role; you are viewer" in page.inner_text(".error .message")
        shot("05-viewer-refused")
        status, deps = api.call("GET", P + "/deployments?status=active&cohort=default")
        assert [d["rollout_percent"] for d in deps["data"]] == [10, 100]  # unchanged
        context.close()
    assert external == [], external  # air-gapped: nothing but the gateway was requested
    print(f"browser test: {time.monotonic() - t0:.1f}s, screenshots in {tmp_path}")
