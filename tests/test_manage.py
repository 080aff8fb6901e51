"""Management API: auth forms, uploads, releases, deployments, cohorts, devices."""
from __future__ import annotations

import base64

import pytest
from conftest import P, PROJECT_KEY, auth_headers, basic_token_headers, deploy, upload_release

from gateway.appkeys import POOL
from gateway.store import bootstrap as bootstrap_store

KEY = {"Memfault-Project-Key": PROJECT_KEY}
LATEST = "/api/v0/releases/latest"


def poll(client, serial, current, sw="fw", hw="mp"):
    params = {"device_serial": serial, "hardware_version": hw, "software_type": sw}
    if current:
        params["current_version"] = current
    return client.get(LATEST, params=params, headers=KEY)


@pytest.mark.parametrize("headers", [auth_headers(), basic_token_headers()])
async def test_bearer_and_basic_token_auth(client, headers):
    r = await client.get(P, headers=headers)
    assert r.status == 200
    assert (await r.json())["data"]["slug"] == "smart-sink"


@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    ({"Authorization": "Bearer wrong"}, 401),
    ({"Authorization": "Basic " + base64.b64encode(b":wrong").decode()}, 401),
    ({"Authorization": "Basic !!!"}, 401),
    ({"Authorization": "Token x"}, 401),
])
async def test_bad_credentials(client, headers, status):
    r = await client.get(P, headers=headers)
    assert r.status == status
    assert (await r.json())["error"]["message"]


async def test_other_org_or_project_is_404(client):
    r = await client.get("/api/v0/organizations/other/projects/smart-sink", headers=auth_headers())
    assert r.status == 404
    r = await client.get("/api/v0/organizations/acme/projects/nope", headers=auth_headers())
    assert r.status == 404


async def test_user_email_secret_basic_auth(client):
    from gateway.crypto.tokens import hash_user_secret

    pool = client.server.app[POOL]
    org_id = await pool.fetchval("SELECT id FROM organizations WHERE slug = 'acme'")
    await bootstrap_store.ensure_user(pool, org_id, "rm@acme.test", hash_user_secret("s3cret-pass"), "viewer")
    ok = {"Authorization": "Basic " + base64.b64encode(b"rm@acme.test:s3cret-pass").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"rm@acme.test:nope").decode()}
    assert (await client.get(P, headers=ok)).status == 200
    assert (await client.get(P, headers=bad)).status == 401
    # a viewer may read but not write
    r = await client.post(P + "/cohorts", json={"slug": "x", "name": "x"}, headers=ok)
    assert r.status == 403 and "editor" in (await r.json())["error"]["message"]


async def test_reupload_identical_is_409_and_different_bytes_is_400(client):
    await upload_release(client, b"A" * 1000, version="5.0.0", software_type="fw", hardware_version="mp")
    await upload_release(client, b"A" * 1000, version="5.0.0", software_type="fw", hardware_version="mp", expect=409)
    err = await upload_release(client, b"B" * 1000, version="5.0.0", software_type="fw", hardware_version="mp",
                               expect=400)
    assert "different payload" in err["error"]["message"]
    # same version, another hardware version: a second payload of the same release
    out = await upload_release(client, b"C" * 1000, version="5.0.0", software_type="fw", hardware_version="dvt",
                               expect=200)
    assert out["data"]["version"] == "5.0.0"


@pytest.mark.parametrize("body, field", [
    ({}, "file"),
    ({"file": {"token": "nope", "name": "a.bin"}, "software_version": {"version": "1", "software_type": "fw"},
      "hardware_version": "mp"}, "file.token"),
    ({"file": {"token": "x"}, "hardware_version": "mp"}, "software_version"),
    ({"file": {"token": "x"}, "software_version": {"software_type": "fw"}, "hardware_version": "mp"},
     "software_version.version"),
    ({"file": {"token": "x"}, "software_version": {"version": ["1.0.0", "1.0.0"], "software_type": "fw"},
      "hardware_version": "mp"}, "software_version.version"),
    ({"file": {"token": "x"}, "software_version": {"version": "1.0.0"}, "hardware_version": "mp"},
     "software_version.software_type"),
    ({"file": {"token": "x"}, "software_version": {"version": "1.0.0", "software_type": "fw"}}, "hardware_version"),
    ({"file": {"token": "x"}, "software_version": {"version": "1.0.0", "software_type": "fw"},
      "hardware_version": "mp", "must_pass_through": "yes"}, "must_pass_through"),
    ({"file": {"token": "x"}, "software_version": {"version": "1.0.0", "software_type": "fw"},
      "hardware_version": "mp", "extra_info": {"a": 1}}, "extra_info"),
])
async def test_ota_payload_validation_names_the_field(client, body, field):
    r = await client.post(P + "/releases/ota_payload", json=body, headers=auth_headers())
    assert r.status == 400
    assert field in (await r.json())["error"]["message"]


async def test_invalid_json_body(client):
    r = await client.post(P + "/deployments", data=b"{not json", headers=auth_headers())
    assert r.status == 400 and "JSON" in (await r.json())["error"]["message"]


async def test_upload_put_requires_valid_signature(client):
    r = await client.post(P + "/upload", json={"kind": "OTA_PAYLOAD", "size": 3}, headers=auth_headers())
    url = (await r.json())["data"]["upload_url"].split("gw.test:8080", 1)[1]
    tampered = url.replace("s=", "s=x")
    assert (await client.put(tampered, data=b"abc")).status == 403
    assert (await client.put(url.split("?")[0], data=b"abc")).status == 403
    assert (await client.put(url, data=b"abc")).status == 200


async def test_upload_size_limit(client):
    from gateway.appkeys import SETTINGS

    settings = client.server.app[SETTINGS]
    old = settings.max_upload_size
    settings.max_upload_size = 100
    try:
        r = await client.post(P + "/upload", json={"kind": "OTA_PAYLOAD", "size": 101}, headers=auth_headers())
        assert r.status == 400 and "too big" in (await r.json())["error"]["message"]
        r = await client.post(P + "/upload", json={"kind": "OTA_PAYLOAD"}, headers=auth_headers())
        url = (await r.json())["data"]["upload_url"].split("gw.test:8080", 1)[1]
        r = await client.put(url, data=b"x" * 5000)
        assert r.status == 413
    finally:
        settings.max_upload_size = old


async def test_deployments_lifecycle_and_release_delete(client):
    await upload_release(client, b"D" * 500, version="7.0.0", software_type="fw7", hardware_version="mp")
    dep = await deploy(client, "7.0.0")
    assert dep["status"] == "done" and dep["cohort"]["slug"] == "default"
    r = await poll(client, "DEPL1", "6.0.0", sw="fw7")
    assert r.status == 200 and (await r.json())["version"] == "7.0.0"
    # the list filter memfault-cli uses for --deactivate
    r = await client.get(P + "/deployments", params={"cohort": "default", "release": "7.0.0"}, headers=auth_headers())
    items = (await r.json())["data"]
    assert [d["id"] for d in items if d["status"] in ("in_progress", "done")] == [dep["id"]]
    # an active release cannot be deleted; the message names the cohort
    r = await client.delete(P + "/releases/7.0.0", headers=auth_headers())
    assert r.status == 409 and "default" in (await r.json())["error"]["message"]
    r = await client.delete(P + f"/deployments/{dep['id']}", headers=auth_headers())
    assert r.status == 200 and (await r.json())["data"]["status"] == "cancelled"
    r = await poll(client, "DEPL1", "6.0.0", sw="fw7")
    assert r.status == 204 and r.headers["memfault-reason"] == "no_active_release"
    assert (await client.delete(P + f"/deployments/{dep['id']}", headers=auth_headers())).status == 409
    assert (await client.delete(P + "/releases/7.0.0", headers=auth_headers())).status == 204
    assert (await client.get(P + "/releases/7.0.0", headers=auth_headers())).status == 404


@pytest.mark.parametrize("body, field", [
    ({"release": "1.0.0"}, "cohort"),
    ({"cohort": "default"}, "release"),
    ({"type": "weird", "release": "1.0.0", "cohort": "default"}, "type"),
    ({"type": "staged_rollout", "release": "1.0.0", "cohort": "default"}, "rollout_percent"),
    ({"type": "staged_rollout", "release": "1.0.0", "cohort": "default", "rollout_percent": 101}, "rollout_percent"),
])
async def test_deployment_validation(client, body, field):
    r = await client.post(P + "/deployments", json=body, headers=auth_headers())
    assert r.status == 400 and field in (await r.json())["error"]["message"]


async def test_deployment_unknown_release_or_cohort_is_404(client):
    r = await client.post(P + "/deployments", json={"release": "0.0.404", "cohort": "default"}, headers=auth_headers())
    assert r.status == 404
    r = await client.post(P + "/deployments", json={"release": "5.0.0", "cohort": "nope"}, headers=auth_headers())
    assert r.status == 404 and "nope" in (await r.json())["error"]["message"]


async def test_cohorts_and_devices(client):
    r = await client.post(P + "/cohorts", json={"name": "Beta", "slug": "beta"}, headers=auth_headers())
    assert r.status == 201
    assert (await client.post(P + "/cohorts", json={"name": "Beta", "slug": "beta"},
                              headers=auth_headers())).status == 409
    slugs = [c["slug"] for c in (await (await client.get(P + "/cohorts", headers=auth_headers())).json())["data"]]
    assert slugs == ["default", "beta"]
    r = await client.post(P + "/devices", json={"device_serial": "FAC1", "hardware_version": "mp", "cohort": "beta"},
                          headers=auth_headers())
    assert r.status == 201 and (await r.json())["data"]["cohort"]["slug"] == "beta"
    r = await client.post(P + "/devices", json={"device_serial": "FAC1", "hardware_version": "mp"},
                          headers=auth_headers())
    assert r.status == 409
    r = await client.post(P + "/devices", json={"device_serial": "bad serial", "hardware_version": "mp"},
                          headers=auth_headers())
    assert r.status == 400 and "device_serial" in (await r.json())["error"]["message"]
    # a beta-only release reaches FAC1 but not default-cohort devices
    await upload_release(client, b"E" * 700, version="8.0.0", software_type="fw8", hardware_version="mp")
    await deploy(client, "8.0.0", cohort="beta")
    r = await poll(client, "FAC1", "1.0.0", sw="fw8")
    assert r.status == 200 and (await r.json())["version"] == "8.0.0"
    r = await poll(client, "OTHER", "1.0.0", sw="fw8")
    assert r.status == 204
    # move back to default: the beta release no longer applies
    r = await client.patch(P + "/devices/FAC1", json={"cohort": "default"}, headers=auth_headers())
    assert r.status == 200 and (await r.json())["data"]["cohort"]["slug"] == "default"
    r = await poll(client, "FAC1", "1.0.0", sw="fw8")
    assert r.status == 204
    assert (await client.patch(P + "/devices/NOPE", json={"cohort": "beta"}, headers=auth_headers())).status == 404
    assert (await client.patch(P + "/devices/FAC1", json={"hardware_version": "x"},
                               headers=auth_headers())).status == 400
    r = await client.get(P + "/devices", params={"cohort": "default"}, headers=auth_headers())
    assert "FAC1" in [d["device_serial"] for d in (await r.json())["data"]]


async def test_staged_rollout_marks_exactly_round_n_p(client):
    for i in range(10):
        r = await client.post(P + "/devices", json={"device_serial": f"ST{i}", "hardware_version": "mp",
                                                    "cohort": "stage"}, headers=auth_headers())
        if r.status == 400:  # cohort not created yet
            await client.post(P + "/cohorts", json={"name": "stage", "slug": "stage"}, headers=auth_headers())
            r = await client.post(P + "/devices", json={"device_serial": f"ST{i}", "hardware_version": "mp",
                                                        "cohort": "stage"}, headers=auth_headers())
        assert r.status == 201
    await upload_release(client, b"S1" * 300, version="1.0.0", software_type="fws", hardware_version="mp")
    await upload_release(client, b"S2" * 300, version="2.0.0", software_type="fws", hardware_version="mp")
    await deploy(client, "1.0.0", cohort="stage")
    dep = await deploy(client, "2.0.0", cohort="stage", percent=30)
    assert dep["status"] == "in_progress" and dep["rollout_percent"] == 30
    got = []
    for i in range(10):
        r = await poll(client, f"ST{i}", "1.0.0", sw="fws")
        got.append(r.status == 200)
        if r.status == 204:
            assert r.headers["memfault-reason"] == "not_staged"
    assert sum(got) == 3
    await deploy(client, "2.0.0", cohort="stage", percent=70)
    got = [(await poll(client, f"ST{i}", "1.0.0", sw="fws")).status == 200 for i in range(10)]
    assert sum(got) == 7


async def test_software_type_cosmetic_routes(client):
    r = await client.get(P + "/software_type_values", params={"per_page": 1}, headers=auth_headers())
    assert r.status == 200 and {"name": "fw"} in (await r.json())["data"]
    r = await client.get(P + "/software_types/fw/software_versions/5.0.0", headers=auth_headers())
    assert r.status == 200


async def test_project_settings_strict_semver(client):
    r = await client.patch(P, json={"strict_semver": True}, headers=auth_headers())
    assert r.status == 200 and (await r.json())["data"]["strict_semver"] is True
    err = await upload_release(client, b"N" * 100, version="3.4.0.2", software_type="fw", hardware_version="mp",
                               expect=400)
    assert "software_version.version" in err["error"]["message"]
    r = await client.patch(P, json={"strict_semver": False, "ddi_software_type": "linux"}, headers=auth_headers())
    assert r.status == 200 and (await r.json())["data"]["ddi_software_type"] == "linux"
    await upload_release(client, b"N" * 100, version="3.4.0.2", software_type="fw", hardware_version="mp")
    r = await client.patch(P, json={"nope": 1}, headers=auth_headers())
    assert r.status == 400 and "nope" in (await r.json())["error"]["message"]
    r = await client.patch(P, json={"strict_semver": "yes"}, headers=auth_headers())
    assert r.status == 400 and "strict_semver" in (await r.json())["error"]["message"]


async def test_patch_release_metadata_reaches_devices(client):
    await upload_release(client, b"meta" * 100, version="9.1.0", software_type="meta", hardware_version="mp")
    await deploy(client, "9.1.0")
    r = await client.patch(P + "/releases/9.1.0", json={"notes": "fixes", "revision": "abc123",
                                                        "extra_info": {"channel": "stable"}}, headers=auth_headers())
    assert r.status == 200
    body = (await r.json())["data"]
    assert (body["notes"], body["revision"], body["extra_info"]) == ("fixes", "abc123", {"channel": "stable"})
    r = await poll(client, "META1", "1.0.0", sw="meta")
    got = await r.json()
    assert (got["notes"], got["revision"], got["extra_info"]) == ("fixes", "abc123", {"channel": "stable"})
    r = await client.patch(P + "/releases/9.1.0", json={"extra_info": {"a": 1}}, headers=auth_headers())
    assert r.status == 400 and "extra_info" in (await r.json())["error"]["message"]
    r = await client.patch(P + "/releases/9.1.0", json={"version": "x"}, headers=auth_headers())
    assert r.status == 400 and "version" in (await r.json())["error"]["message"]


async def test_oversized_json_body_is_413_json(client):
    r = await client.post(P + "/cohorts", data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                          headers={**auth_headers(), "Content-Type": "application/json"})
    assert r.status == 413
    assert (await r.json())["error"]["message"]
