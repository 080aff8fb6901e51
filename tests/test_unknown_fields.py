"""Unknown fields in a management request body are refused (400 naming the field) before
anything is applied; the real memfault-cli's bodies, every flag of them, are accepted."""
from __future__ import annotations

import os
import re

import pytest
from conftest import ORG, ORG_TOKEN, P, PROJECT, PROJECT_KEY, auth_headers, upload_release
from procs import Gateway, memfault_cli

PLACEHOLDERS = {"org": ORG, "project": PROJECT, "cohort": "default", "serial": "NOSUCH", "id": "1",
                "release": "1", "action_id": "1", "decision": "approve"}


def _filled(path: str) -> str:
    return re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: PLACEHOLDERS[m.group(1)], path)


def management_writes(app) -> list[tuple[str, str]]:
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("formatter") or info.get("path") or ""
        if route.method not in ("GET", "HEAD", "OPTIONS", "*") and path.startswith("/api/v0/organizations/"):
            out.append((route.method, path))
    return sorted(set(out))


async def test_every_management_write_refuses_an_unknown_field(client):
    routes = management_writes(client.server.app)
    assert len(routes) >= 25
    for method, path in routes:
        r = await client.request(method, _filled(path), json={"dryrun": True}, headers=auth_headers())
        body = await r.json()
        assert r.status == 400, f"{method} {path}: {r.status} {body}"
        assert body["error"]["type"] == "unknown_field" and "'dryrun'" in body["error"]["message"], (method, path)


async def test_a_misspelt_dry_run_is_refused_and_nothing_is_activated(client):
    """`dryrun` is not `dry_run` (which previews, tests/test_preview.py): refused, never applied."""
    await upload_release(client, b"dry" * 300, version="3.0.0", software_type="dry", hardware_version="mp")
    params = {"device_serial": "DRY1", "hardware_version": "mp", "software_type": "dry", "current_version": "1.0.0"}
    r = await client.get("/api/v0/releases/latest", params=params, headers={"Memfault-Project-Key": PROJECT_KEY})
    assert r.status == 204
    r = await client.post(P + "/deployments", json={"type": "normal", "release": "3.0.0", "cohort": "default",
                                                    "dryrun": True}, headers=auth_headers())
    assert r.status == 400 and "dryrun" in (await r.json())["error"]["message"]
    r = await client.get(P + "/deployments", params={"release": "3.0.0"}, headers=auth_headers())
    assert (await r.json())["data"] == []
    r = await client.get("/api/v0/releases/latest", params=params, headers={"Memfault-Project-Key": PROJECT_KEY})
    assert r.status == 204


@pytest.mark.parametrize("mutate,field", [
    (lambda b: b["software_version"].update(channel="beta"), "software_version.channel"),
    (lambda b: b["file"].update(sha256="0" * 64), "file.sha256"),
    (lambda b: b.update(hardware_versions=["a"]), "hardware_versions"),
])
async def test_nested_unknown_fields_are_named(client, mutate, field):
    r = await client.post(P + "/upload", json={"kind": "OTA_PAYLOAD", "size": 3}, headers=auth_headers())
    up = (await r.json())["data"]
    await client.put(up["upload_url"].split("gw.test:8080", 1)[1], data=b"abc")
    body = {"file": {"token": up["token"], "name": "a.bin"}, "software_version": {"version": "4.0.0",
                                                                                  "software_type": "nest"},
            "hardware_version": "mp"}
    mutate(body)
    r = await client.post(P + "/releases/ota_payload", json=body, headers=auth_headers())
    assert r.status == 400
    assert f"'{field}'" in (await r.json())["error"]["message"]
    r = await client.get(P + "/releases", params={"software_type": "nest"}, headers=auth_headers())
    assert (await r.json())["data"] == []


async def test_known_fields_of_the_wrong_type_still_answer_400_naming_them(client):
    r = await client.patch(P + "/cohorts/default", json={"version_checking": "yes"}, headers=auth_headers())
    assert r.status == 400 and "version_checking" in (await r.json())["error"]["message"]


# -- the real memfault-cli ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def gw(database_url, data_dir):
    with Gateway(database_url, data_dir) as g:
        yield g


def memfault(gw, *args):
    return memfault_cli(gw.url, ORG, PROJECT, ORG_TOKEN, *args)


def test_memfault_cli_sends_only_fields_we_take(gw, tmp_path):
    """Every option memfault-cli 1.x puts in a request body: revision, notes, must-pass-through,
    extra metadata, component versions, deltas, rollout percentages, deactivation."""
    fw = tmp_path / "fw.bin"
    fw.write_bytes(os.urandom(2000))
    common = ["--hardware-version", "mp", "--software-type", "cli-fw"]
    memfault(gw, "upload-ota-payload", *common, "--software-version", "1.0.0", "--revision", "abc123",
             "--notes", "first", "--must-pass-through", "--extra-metadata", "channel=beta", str(fw))
    fw.write_bytes(os.urandom(2000))
    memfault(gw, "upload-ota-payload", *common, "--software-version", "1.1.0", "--component-version", "2.1.0",
             "--component-base-version", "2.0.0", str(fw))
    fw.write_bytes(os.urandom(500))
    memfault(gw, "upload-ota-payload", *common, "--delta-from", "1.0.0", "--delta-to", "1.1.0", str(fw))
    memfault(gw, "deploy-release", "--release-version", "1.0.0", "--cohort", "default", "--rollout-percent", "30")
    memfault(gw, "deploy-release", "--release-version", "1.0.0", "--cohort", "default")
    memfault(gw, "deploy-release", "--delta-from", "1.0.0", "--delta-to", "1.1.0", "--cohort", "default")
    memfault(gw, "deploy-release", "--release-version", "1.0.0", "--cohort", "default", "--deactivate")
    import json
    import urllib.request

    req = urllib.request.Request(f"{gw.url}{P}/releases?software_type=cli-fw",
                                 headers={"Authorization": f"Bearer {ORG_TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        releases = json.load(resp)["data"]
    got = {(r["version"], r["delta_from"]): r for r in releases}
    assert set(got) == {("1.0.0", None), ("1.1.0", None), ("1.1.0", "1.0.0")}
    first = got[("1.0.0", None)]
    assert first["revision"] == "abc123" and first["notes"] == "first" and first["must_pass_through"]
    assert first["artifacts"][0]["extra_info"] == {"channel": "beta"}
