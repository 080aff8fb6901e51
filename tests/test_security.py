"""Auth matrix over every management route, device-route credentials, and secrets in logs."""
from __future__ import annotations

import logging
import re

import pytest
from conftest import ORG_TOKEN, PROJECT_KEY, auth_headers

from gateway.appkeys import MIRROR, POOL
from gateway.store import bootstrap as bootstrap_store

OTHER_ORG_TOKEN = "oat_other_org_token_456"
VIEWER_TOKEN = "oat_viewer_token_789"


def management_routes(app) -> list[tuple[str, str]]:
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("formatter") or info.get("path")
        if path and path.startswith("/api/v0/organizations") and route.method != "HEAD":
            out.append((route.method, path))
    return sorted(set(out))


def concrete(path: str) -> str:
    values = {"org": "acme", "project": "smart-sink", "serial": "SEC1", "cohort": "default", "release": "1",
              "id": "1", "type": "main", "version": "1.0.0"}
    return re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: values.get(m.group(1), "x"), path)


@pytest.fixture
async def secured(client):
    pool = client.server.app[POOL]
    other = await bootstrap_store.ensure_org(pool, "other-org")
    await bootstrap_store.ensure_project(pool, other, "other-project")
    await bootstrap_store.ensure_org_token(pool, other, OTHER_ORG_TOKEN)
    acme = await pool.fetchval("SELECT id FROM organizations WHERE slug = 'acme'")
    await bootstrap_store.ensure_org_token(pool, acme, VIEWER_TOKEN, role="viewer", name="viewer")
    return client


async def test_every_management_route_denies_bad_credentials(secured):
    routes = management_routes(secured.server.app)
    assert len(routes) >= 30
    cases = denied = 0
    for method, path in routes:
        url = concrete(path)
        checks = [({}, 401), ({"Authorization": "Bearer wrong"}, 401),
                  ({"Authorization": "Basic Og=="}, 401),  # ":" with an empty secret
                  (auth_headers(OTHER_ORG_TOKEN), 404)]
        if method != "GET":
            checks.append((auth_headers(VIEWER_TOKEN), 403))
        for headers, expected in checks:
            r = await secured.request(method, url, headers=headers, json={})
            cases += 1
            assert r.status == expected, (method, url, headers, r.status, await r.text())
            body = await r.json()
            assert body["error"]["message"]
            denied += 1
    print(f"auth matrix: {denied}/{cases} denied over {len(routes)} routes")


async def test_device_routes_deny_bad_keys(secured):
    pool = secured.server.app[POOL]
    other = await pool.fetchval("SELECT id FROM projects WHERE slug = 'other-project'")
    await bootstrap_store.ensure_project_key(pool, other, "otherprojectkey00000000000000000")
    await secured.server.app[MIRROR].apply({"keys", f"project:{other}"})
    params = {"device_serial": "SEC1", "hardware_version": "mp", "software_type": "main"}
    for headers in ({}, {"Memfault-Project-Key": ""}, {"Memfault-Project-Key": "wrong"},
                    {"Memfault-Project-Key": PROJECT_KEY.upper()}):
        for path in ("/api/v0/releases/latest", "/api/v0/releases/latest/url"):
            r = await secured.get(path, params=params, headers=headers)
            assert r.status == 403
    # a key of another project authenticates that project: our hardware is unknown there
    r = await secured.get("/api/v0/releases/latest", params=params,
                          headers={"Memfault-Project-Key": "otherprojectkey00000000000000000"})
    assert r.status == 400


async def test_unknown_routes_are_json_404(client):
    r = await client.get("/nope/../etc/passwd")
    assert r.status == 404 and (await r.json())["error"]["message"]


async def test_no_secret_in_logs(client, caplog):
    caplog.set_level(logging.DEBUG)
    await client.get("/api/v0/releases/latest", params={"device_serial": "A", "hardware_version": "x",
                                                          "software_type": "y"},
                     headers={"Memfault-Project-Key": PROJECT_KEY})
    await client.get("/api/v0/organizations/acme/projects/smart-sink", headers=auth_headers())
    await client.get("/api/v0/organizations/acme/projects/smart-sink", headers=auth_headers("oat_wrong_secret"))
    await client.post("/api/v0/organizations/acme/projects/smart-sink/project-keys", json={"name": "k"},
                      headers=auth_headers())
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in (ORG_TOKEN, PROJECT_KEY, "oat_wrong_secret"):
        assert secret not in text


async def test_a_revoked_key_stops_working_even_after_it_was_remembered(client):
    """Valid keys are remembered by the poll path; revoking one must end that at once."""
    from conftest import P

    r = await client.post(P + "/project-keys", json={"name": "short-lived"}, headers=auth_headers())
    created = (await r.json())["data"]
    params = {"device_serial": "REV1", "hardware_version": "mp", "software_type": "main"}
    for _ in range(3):
        r = await client.get("/api/v0/releases/latest", params=params, headers={"Memfault-Project-Key": created["key"]})
        assert r.status != 403
    assert (await client.delete(P + f"/project-keys/{created['id']}", headers=auth_headers())).status == 204
    r = await client.get("/api/v0/releases/latest", params=params, headers={"Memfault-Project-Key": created["key"]})
    assert r.status == 403
    for junk in (f"k{i:031d}" for i in range(50)):  # invalid keys are not remembered
        await client.get("/api/v0/releases/latest", params=params, headers={"Memfault-Project-Key": junk})
    assert len(client.server.app[MIRROR]._raw_keys) <= 2
