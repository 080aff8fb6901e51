"""schemathesis against a live `ota-gateway serve`: every documented operation, positive and
negative examples, authenticated. No response may be a 5xx or stray from the OpenAPI document
(status code, content type, headers, body schema)."""
from __future__ import annotations

import base64
import collections
import hashlib
import json
import time
import urllib.request

import pytest
import schemathesis
from conftest import ORG, ORG_TOKEN, PROJECT, PROJECT_KEY
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

from procs import Gateway

P = f"/api/v0/organizations/{ORG}/projects/{PROJECT}"
USER, SECRET = "fuzz@example.com", "fuzz-secret-0123456789"
EXAMPLES = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 20}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
# Operations that would take the fuzzer's own credentials away; tests/test_openapi.py covers them.
REAL = {"org": ORG, "project": PROJECT, "tenant": PROJECT}
SKIP = {("DELETE", "/api/v0/organizations/{org}/projects/{project}/project-keys/{id}")}


def _http(gw: Gateway, method: str, path: str, body=None, *, raw: bytes | None = None, token=True):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Authorization": f"Bearer {ORG_TOKEN}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(gw.url + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        out = r.read()
        return json.loads(out) if out else None


@pytest.fixture(scope="module")
def live(database_url, data_dir):
    """A gateway subprocess with a release active in `default`, a cohort, a device and a manager user."""
    gw = Gateway(database_url, data_dir)
    try:
        gw.wait_ready()
        content = b"fuzz firmware " * 300
        up = _http(gw, "POST", P + "/upload", {"kind": "OTA_PAYLOAD", "size": len(content)})["data"]
        _http(gw, "PUT", up["upload_url"].split(gw.url, 1)[1], raw=content, token=False)
        _http(gw, "POST", P + "/releases/ota_payload", {
            "file": {"token": up["token"], "md5": hashlib.md5(content).hexdigest(), "name": "fuzz.bin"},
            "software_version": {"version": "1.0.0", "software_type": "main"}, "hardware_version": "evt"})
        _http(gw, "POST", P + "/deployments", {"type": "normal", "release": "1.0.0", "cohort": "default"})
        _http(gw, "POST", P + "/cohorts", {"slug": "beta", "name": "Beta"})
        _http(gw, "POST", P + "/devices", {"device_serial": "FUZZ1", "hardware_version": "evt", "cohort": "beta"})
        _http(gw, "POST", f"/api/v0/organizations/{ORG}/users", {"email": USER, "role": "manager", "secret": SECRET})
        yield gw
    finally:
        out = gw.stop()
        assert "Traceback" not in out, out[-3000:]


def auth_for(path: str) -> dict:
    if path.startswith("/api/v0/organizations/"):
        # a user cannot be deleted over the API, unlike a token the fuzzer might revoke
        return {"Authorization": "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()}
    if path.startswith("/api/v0/releases/"):
        return {"Memfault-Project-Key": PROJECT_KEY}
    if "/controller/v1/" in path:
        return {"Authorization": f"GatewayToken {PROJECT_KEY}"}
    return {}


def test_schemathesis_finds_no_5xx_and_no_spec_violation(live):
    schema = schemathesis.openapi.from_url(live.url + "/api/openapi.json")
    statuses: collections.Counter = collections.Counter()
    failures: list[str] = []
    tried = 0
    unsatisfiable: list[str] = []
    t0 = time.monotonic()
    operations = [r.ok() for r in schema.get_all_operations()]
    for operation in operations:
        if operation.method.upper() == "HEAD" or (operation.method.upper(), operation.path) in SKIP:
            continue
        headers = auth_for(operation.path)
        names = {p.name for p in operation.path_parameters}
        for mode, n in EXAMPLES.items():
            # positive examples name the real organization and project, to get past authorization
            # into the handlers; negative ones mutate those too
            fixed = {k: v for k, v in REAL.items() if k in names} if mode == GenerationMode.POSITIVE else None
            strategy = operation.as_strategy(generation_mode=mode, headers=headers, path_parameters=fixed)

            @settings(max_examples=n, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def run(case):
                nonlocal tried
                tried += 1
                response = case.call(base_url=live.url, headers=headers, timeout=15)
                statuses[response.status_code] += 1
                try:
                    case.validate_response(response, checks=CHECKS, headers=headers)
                except (AssertionError, BaseExceptionGroup) as e:
                    if len(failures) < 50:
                        failures.append(f"{case.operation.label} [{mode.value}] -> {response.status_code}: "
                                        f"{str(e)[:600]}\n  {case.as_curl_command()[:400]}")

            try:
                run()
            except Unsatisfiable:  # nothing to negate (e.g. no parameters): positive examples only
                unsatisfiable.append(f"{operation.label} [{mode.value}]")
    elapsed = time.monotonic() - t0
    print(f"schemathesis {schemathesis.__version__}: {tried} examples over {len(operations)} operations "
          f"in {elapsed:.0f}s; statuses {dict(sorted(statuses.items()))}; {len(failures)} failures; "
          f"no negative examples for {len(unsatisfiable)}")
    assert not failures, "\n\n".join(failures)
    assert tried > 500 and statuses[200] > 0 and not any(code >= 500 for code in statuses)
