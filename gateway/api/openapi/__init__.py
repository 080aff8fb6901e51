"""The OpenAPI 3.1 document of the whole HTTP surface, served at GET /api/openapi.json.

Built once at import from small helpers (helpers.py), the components (schemas.py), the request
bodies (bodies.py) and one module of paths per resource family (paths_*.py). Schemas describe
what the handlers really return (their `*_json` functions): every field they always send is
`required`, extra fields are allowed so that the document states a floor, not a ceiling.
tests/test_openapi.py keeps the document and `app.router` in step and validates real responses
against it; tests/test_fuzz.py runs schemathesis against a live gateway with it.
"""
from __future__ import annotations

import copy
import re

import orjson
from aiohttp import web

from gateway.api.openapi.bodies import BODIES, ROLE
from gateway.api.openapi.helpers import ERROR, PATH_PARAMS
from gateway.api.openapi.paths_deployments import deployment_paths
from gateway.api.openapi.paths_device import (
    DDI_BASE,
    DDI_ROOTS,
    ddi_paths,
    memfault_paths,
)
from gateway.api.openapi.paths_fleet import cohort_paths, device_ddi_paths, device_paths
from gateway.api.openapi.paths_ops import operations_paths
from gateway.api.openapi.paths_org import O, org_paths, project_paths
from gateway.api.openapi.paths_releases import release_paths
from gateway.api.openapi.schemas import (
    REQUEST_ACTIONS,
    RESPONSES,
    SCHEMAS,
    SECURITY_SCHEMES,
)
from gateway.http.errors import add_route

__all__ = ["BODIES", "DDI_BASE", "DDI_ROOTS", "DOCUMENT", "O", "PATH_PARAMS", "REQUEST_ACTIONS", "RESPONSES",
           "ROLE", "SCHEMAS", "build", "openapi_json", "setup"]

TAGS = ("device: memfault", "device: hawkBit DDI", "artifacts", "management", "operations")


def _all_paths() -> dict:
    """Every path, in the document's order: the devices', the management API's, operations'."""
    return {**memfault_paths(), **ddi_paths(), **project_paths(), **release_paths(), **deployment_paths(),
            **cohort_paths(), **device_paths(), **device_ddi_paths(), **org_paths(), **operations_paths()}


def _path_parameters(path: str, operation: dict) -> None:
    """Declare every {name} of the path template on the operation."""
    names = re.findall(r"\{(\w+)\}", path)
    params = [PATH_PARAMS[n] for n in names]
    operation["parameters"] = params + operation.get("parameters", [])
    if names:  # a path parameter with a non-ASCII digit is answered 404 by errors.instrument
        operation["responses"].setdefault("404", ERROR)


def _with_head(paths: dict) -> None:
    """aiohttp answers HEAD for every GET route: the same operation without a body."""
    for item in paths.values():
        if "get" in item:
            head = copy.deepcopy(item["get"])
            head["summary"] = "HEAD of: " + head["summary"]
            for r in head["responses"].values():
                if isinstance(r, dict) and "content" in r:
                    del r["content"]
            item["head"] = head


def build() -> dict:
    paths = _all_paths()
    for path, item in paths.items():
        for operation in item.values():
            _path_parameters(path, operation)
    _with_head(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "ota-gateway", "version": "0.1.0",
                 "description": "hawkBit DDI and Memfault device APIs, Memfault-shaped management API, "
                                "signed artifact delivery. Every JSON error is {\"error\": {\"message\", "
                                "\"type\"}}, except DDI's bare 401."},
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in TAGS],
        "paths": paths,
        "components": {"schemas": dict(SCHEMAS), "responses": RESPONSES, "securitySchemes": SECURITY_SCHEMES},
    }


DOCUMENT = build()
_BODY = orjson.dumps(DOCUMENT)


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type="application/json", headers={"Cache-Control": "no-cache"})


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/api/openapi.json", openapi_json, shed=False)
