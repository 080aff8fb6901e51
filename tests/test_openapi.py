"""The OpenAPI document: valid OpenAPI 3.1, in step with app.router, and true of real responses."""
from __future__ import annotations

import re

import jsonschema
import orjson
import pytest
from conftest import ORG, PROJECT, PROJECT_KEY, P, auth_headers, upload_release
from openapi_spec_validator import validate as validate_spec

from gateway.api.mgmt.common import P as T
from gateway.api.openapi import DOCUMENT

GW = {"Authorization": f"GatewayToken {PROJECT_KEY}"}
KEY = {"Memfault-Project-Key": PROJECT_KEY}
PUBLIC = "http://gw.test:8080"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def router_operations(app) -> set[tuple[str, str]]:
    """(method, path template) of every route, the JSON 404 catch-all excepted."""
    out = set()
    for route in app.router.routes():
        info = route.resource.get_info()
        path = info.get("formatter") or info.get("path")
        if route.method == "*" and path == "/{tail}":
            continue  # any other method and path: the JSON 404, not an operation
        if path.startswith("/ui/") or path == "/ui":
            continue  # the HTML dashboard (being written): pages for people, not part of the API
        out.add((route.method.lower(), path))
    return out


def document_operations() -> set[tuple[str, str]]:
    return {(m, path) for path, item in DOCUMENT["paths"].items() for m in item if m in METHODS}


def test_document_is_valid_openapi():
    validate_spec(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.1")
    assert {"Error", "Release", "Deployment", "Cohort", "Device", "DeviceRelease"} <= set(DOCUMENT["components"]["schemas"])


async def test_every_route_is_documented_and_every_operation_routed(client):
    routed, documented = router_operations(client.server.app), document_operations()
    assert routed - documented == set(), "routes missing from gateway/openapi.py"
    assert documented - routed == set(), "documented operations that no route serves"
    assert len(routed) > 100  # both DDI roots, HEAD for every GET
    for path, item in DOCUMENT["paths"].items():  # every {param} of a template is declared
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{(\w+)\}", path)), (method, path)


async def test_served_document_is_the_module_document(client):
    r = await client.get("/api/openapi.json")
    assert r.status == 200 and r.content_type == "application/json"
    assert await r.json() == DOCUMENT


# -- real responses against the document ----------------------------------------------------------------

def _resolve(node: dict) -> dict:
    while "$ref" in node and len(node) == 1 and node["$ref"].startswith("#/components/responses/"):
        node = DOCUMENT["components"]["responses"][node["$ref"].rsplit("/", 1)[1]]
    return node


class Checker:
    """Validates responses against the document; counts what it checked."""

    def __init__(self, client):
        self.client = client
        self.checked: dict[str, int] = {}

    async def __call__(self, method: str, url: str, template: str, *, expect: int | None = None, **kw):
        r = await self.client.request(method, url, **kw)
        body = await r.read()
        template = template.replace(P, T)  # conftest's P is the concrete project path
        operation = DOCUMENT["paths"][template][method.lower()]
        responses = operation["responses"]
        assert str(r.status) in responses, (method, template, r.status, body[:300])
        if expect is not None:
            assert r.status == expect, (method, url, r.status, body[:300])
        spec = _resolve(responses[str(r.status)])
        content = spec.get("content")
        if not content:
            assert method == "HEAD" or r.status in (204, 304) or body in (b"",), (template, r.status, body[:100])
        else:
            assert r.content_type in content, (template, r.status, r.content_type, list(content))
            if r.content_type == "application/json" and method != "HEAD":
                schema = {**content["application/json"]["schema"], "components": DOCUMENT["components"]}
                jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(
                    orjson.loads(body))
        for name, h in spec.get("headers", {}).items():
            if name in ("memfault-reason", "Retry-After", "Content-Range") and r.status in (204, 503, 206, 416):
                assert name in r.headers, (template, r.status, name)
        key = f"{method} {template} {r.status}"
        self.checked[key] = self.checked.get(key, 0) + 1
        r.body = body
        return r


@pytest.fixture
async def check(client):
    return Checker(client)


async def test_main_flows_match_the_document(client, check):
    a = auth_headers()
    # release, upload, deploy: the memfault-cli sequence
    await check("GET", P, P, expect=200, headers=a)
    await check("PATCH", P, P, expect=200, headers=a, json={"poll_limit_per_minute": None})
    up = await check("POST", P + "/upload", P + "/upload", expect=200, headers=a, json={"kind": "OTA_PAYLOAD"})
    upload = orjson.loads(up.body)["data"]
    content = b"openapi firmware " * 400
    await check("PUT", upload["upload_url"].split(PUBLIC, 1)[1], "/api/v0/uploads/{token}", expect=200,
                data=content)
    await check("POST", P + "/releases/ota_payload", P + "/releases/ota_payload", expect=201, headers=a, json={
        "file": {"token": upload["token"], "name": "oa.bin"},
        "software_version": {"version": "3.0.0", "software_type": "oa"}, "hardware_version": "oa-hw",
        "extra_info": {"k": "v"}})
    await check("POST", P + "/releases/ota_payload", P + "/releases/ota_payload", expect=400, headers=a,
                json={"file": {"token": "nope"}})
    await upload_release(client, content + b"2", version="3.1.0", software_type="oa", hardware_version="oa-hw")
    await check("GET", P + "/releases", P + "/releases", expect=200, headers=a)
    await check("GET", P + "/releases/3.0.0", P + "/releases/{release}", expect=200, headers=a)
    await check("PATCH", P + "/releases/3.0.0", P + "/releases/{release}", expect=200, headers=a,
                json={"notes": "n"})
    await check("GET", P + "/releases/9.9.9", P + "/releases/{release}", expect=404, headers=a)
    await check("GET", P + "/software_type_values", P + "/software_type_values", expect=200, headers=a)
    await check("GET", P + "/software_types/oa/software_versions/3.0.0",
                P + "/software_types/{type}/software_versions/{version}", expect=200, headers=a)
    dep = await check("POST", P + "/deployments", P + "/deployments", expect=201, headers=a,
                      json={"type": "normal", "release": "3.0.0", "cohort": "default"})
    await check("GET", P + "/deployments?cohort=default&release=3.0.0", P + "/deployments", expect=200, headers=a)
    await check("GET", P + "/deployment-history", P + "/deployment-history", expect=200, headers=a)
    await check("GET", P + "/activation-requests", P + "/activation-requests", expect=200, headers=a)
    await check("POST", P + "/activation-requests/999/approve", P + "/activation-requests/{id}/approve",
                expect=404, headers=a)

    # the device side: JSON release, URL, bytes (whole, range, bad range), 204
    params = {"device_serial": "OA1", "hardware_version": "oa-hw", "software_type": "oa", "current_version": "1.0"}
    await check("GET", "/api/v0/releases/latest", "/api/v0/releases/latest", expect=200, headers=KEY, params=params)
    url = await check("GET", "/api/v0/releases/latest/url", "/api/v0/releases/latest/url", expect=200, headers=KEY,
                      params=params)
    dl = url.body.decode().split(PUBLIC, 1)[1]
    dl_template = "/dl/{payload_id}/{filename}"
    await check("GET", dl, dl_template, expect=200)
    await check("HEAD", dl, dl_template, expect=200)
    await check("GET", dl, dl_template, expect=206, headers={"Range": "bytes=0-9"})
    await check("GET", dl, dl_template, expect=416, headers={"Range": "bytes=9-0"})
    await check("GET", dl.split("?")[0] + "?e=1&s=x", dl_template, expect=403)
    await check("GET", "/api/v0/releases/latest", "/api/v0/releases/latest", expect=204, headers=KEY,
                params={**params, "current_version": "3.0.0"})
    await check("GET", "/api/v0/releases/latest", "/api/v0/releases/latest", expect=400, headers=KEY,
                params={**params, "software_type": "unknown"})
    await check("GET", "/api/v0/releases/latest", "/api/v0/releases/latest", expect=204, headers=KEY,
                params={**params, "hardware_version": "unknown"})
    await check("GET", "/api/v0/releases/latest/url", "/api/v0/releases/latest/url", expect=403, params=params)

    # fleet
    await check("POST", P + "/cohorts", P + "/cohorts", expect=201, headers=a, json={"slug": "oa-beta", "name": "B"})
    await check("POST", P + "/cohorts", P + "/cohorts", expect=409, headers=a, json={"slug": "oa-beta"})
    await check("GET", P + "/cohorts", P + "/cohorts", expect=200, headers=a)
    await check("GET", P + "/cohorts/oa-beta", P + "/cohorts/{cohort}", expect=200, headers=a)
    await check("PATCH", P + "/cohorts/oa-beta", P + "/cohorts/{cohort}", expect=200, headers=a,
                json={"ddi_polling_interval": 60})
    await check("POST", P + "/devices", P + "/devices", expect=201, headers=a,
                json={"device_serial": "OA2", "hardware_version": "oa-hw", "cohort": "oa-beta"})
    await check("GET", P + "/devices?per_page=5", P + "/devices", expect=200, headers=a)
    await check("GET", P + "/devices/OA2", P + "/devices/{serial}", expect=200, headers=a)
    await check("PATCH", P + "/devices/OA2", P + "/devices/{serial}", expect=200, headers=a,
                json={"cohort": "default"})
    await check("PUT", P + "/devices/OA2/release-override", P + "/devices/{serial}/release-override", expect=200,
                headers=a, json={"release": "3.0.0"})
    await check("DELETE", P + "/devices/OA2/release-override", P + "/devices/{serial}/release-override",
                expect=200, headers=a)
    await check("POST", P + "/cohorts/oa-beta/staging", P + "/cohorts/{cohort}/staging", expect=409, headers=a,
                json={"limit": 10})  # no staged rollout in the cohort yet
    await check("POST", P + "/deployments", P + "/deployments", expect=201, headers=a,
                json={"type": "staged_rollout", "release": "3.0.0", "cohort": "oa-beta", "rollout_percent": 0})
    await check("POST", P + "/cohorts/oa-beta/staging", P + "/cohorts/{cohort}/staging", expect=200, headers=a,
                json={"limit": 10})
    await check("GET", P + "/cohorts/default/version-matrix?software_type=oa", P + "/cohorts/{cohort}/version-matrix",
                expect=200, headers=a)
    await check("GET", P + "/devices/OA2/history", P + "/devices/{serial}/history", expect=200, headers=a)
    await check("GET", P + "/devices/OA2/inspect", P + "/devices/{serial}/inspect", expect=200, headers=a)
    await check("GET", P + "/audit-log?limit=5", P + "/audit-log", expect=200, headers=a)
    key = await check("POST", P + "/project-keys", P + "/project-keys", expect=201, headers=a, json={"name": "oa"})
    await check("GET", P + "/project-keys", P + "/project-keys", expect=200, headers=a)
    kid = orjson.loads(key.body)["data"]["id"]
    await check("DELETE", f"{P}/project-keys/{kid}", P + "/project-keys/{id}", expect=204, headers=a)

    # DDI device and its management
    ddi = f"/{PROJECT}/controller/v1/OA3"
    tmpl = "/{tenant}/controller/v1/{controllerId}"
    await check("PUT", ddi + "/configData", tmpl + "/configData", expect=200, headers=GW, json={
        "data": {"memfault__hardware_version": "oa-hw", "memfault__software_type": "oa",
                 "memfault__current_version": "1.0"}})
    poll = await check("GET", ddi, tmpl, expect=200, headers=GW)
    href = orjson.loads(poll.body)["_links"]["deploymentBase"]["href"].split(PUBLIC, 1)[1]
    action = href.split("/deploymentBase/")[1].split("?")[0]
    doc = await check("GET", href, tmpl + "/deploymentBase/{actionId}", expect=200, headers=GW)
    art = orjson.loads(doc.body)["deployment"]["chunks"][0]["artifacts"][0]
    art_tmpl = tmpl + "/softwaremodules/{softwareModuleId}/artifacts/{fileName}"
    await check("GET", art["_links"]["download-http"]["href"].split(PUBLIC, 1)[1], art_tmpl, expect=200)
    await check("GET", art["_links"]["md5sum-http"]["href"].split(PUBLIC, 1)[1], art_tmpl, expect=200)
    module = art["_links"]["download-http"]["href"].split("/softwaremodules/")[1].split("/")[0]
    await check("GET", f"{ddi}/softwaremodules/{module}/artifacts", tmpl + "/softwaremodules/{softwareModuleId}/artifacts",
                expect=200, headers=GW)
    fb = {"status": {"execution": "closed", "result": {"finished": "success"}}}
    await check("POST", f"{ddi}/deploymentBase/{action}/feedback", tmpl + "/deploymentBase/{actionId}/feedback",
                expect=200, headers=GW, json=fb)
    await check("POST", f"{ddi}/deploymentBase/{action}/feedback", tmpl + "/deploymentBase/{actionId}/feedback",
                expect=410, headers=GW, json=fb)
    await check("GET", f"{ddi}/installedBase/{action}", tmpl + "/installedBase/{actionId}", expect=200, headers=GW)
    await check("GET", f"{ddi}/cancelAction/{action}", tmpl + "/cancelAction/{actionId}", expect=404, headers=GW)
    await check("GET", "/api/v0/hawkbit/default/controller/v1/OA3", "/api/v0/hawkbit" + tmpl, expect=200,
                headers=GW)
    await check("GET", ddi, tmpl, expect=401, headers={"Authorization": "GatewayToken wrong"})
    D = P + "/devices/{serial}/ddi"
    await check("GET", P + "/devices/OA3/ddi", D, expect=200, headers=a)
    await check("GET", P + "/devices/OA3/ddi/actions", D + "/actions", expect=200, headers=a)
    await check("POST", P + "/devices/OA3/ddi/token", D + "/token", expect=200, headers=a, json={})
    await check("DELETE", P + "/devices/OA3/ddi/token", D + "/token", expect=204, headers=a)
    await check("POST", f"{P}/devices/OA3/ddi/actions/{action}/retry", D + "/actions/{action_id}/retry", expect=409,
                headers=a)
    await check("GET", P + "/ddi/releases", P + "/ddi/releases", expect=200, headers=a)

    # pull the deployment, delete a release, org administration, operations, errors
    dep_id = orjson.loads(dep.body)["data"]["id"]
    await check("DELETE", f"{P}/deployments/{dep_id}", P + "/deployments/{id}", expect=200, headers=a)
    await check("DELETE", P + "/releases/3.1.0", P + "/releases/{release}", expect=204, headers=a)
    O = f"/api/v0/organizations/{ORG}"
    tok = await check("POST", O + "/tokens", "/api/v0/organizations/{org}/tokens", expect=201, headers=a,
                      json={"name": "oa", "role": "viewer"})
    await check("GET", O + "/tokens", "/api/v0/organizations/{org}/tokens", expect=200, headers=a)
    tid = orjson.loads(tok.body)["data"]["id"]
    await check("DELETE", f"{O}/tokens/{tid}", "/api/v0/organizations/{org}/tokens/{id}", expect=204, headers=a)
    await check("POST", O + "/users", "/api/v0/organizations/{org}/users", expect=201, headers=a,
                json={"email": "oa@example.com", "role": "viewer"})
    await check("GET", O + "/users", "/api/v0/organizations/{org}/users", expect=200, headers=a)
    await check("GET", P, P, expect=401)
    await check("GET", P.replace(PROJECT, "nope"), P, expect=404, headers=a)
    await check("POST", P + "/cohorts", P + "/cohorts", expect=415, headers={**a, "Content-Type": "text/plain"},
                data=b"slug=x")
    for path in ("/healthz", "/readyz", "/metrics", "/api/openapi.json"):
        await check("GET", path, path, expect=200)
    covered = {k.rsplit(" ", 1)[0] for k in check.checked}
    print(f"validated {sum(check.checked.values())} responses of {len(covered)} operations against the document")
    assert len(covered) >= 55
