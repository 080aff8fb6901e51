"""Paths the devices call: the Memfault device API (with signed artifact download and upload
targets) and hawkBit DDI, served at the root and under /api/v0/hawkbit."""
from __future__ import annotations

from gateway.api.openapi.helpers import (
    BODY_RANGE,
    INT,
    SIGNED,
    STR,
    arr,
    errors,
    header,
    json_content,
    ok,
    op,
    query,
    ref,
)

DDI_ROOTS = ("", "/api/v0/hawkbit")
DDI_BASE = "/{tenant}/controller/v1/{controllerId}"
DDI_TAG = "device: hawkBit DDI"
DDI_SECURITY = [{"ddiToken": []}]


def blob_responses() -> dict:
    blob = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "text/plain": {"schema": STR}}
    hdrs = {"ETag": {"schema": STR}, "Content-Length": {"schema": INT}}
    return {
        "200": {"description": "the whole artifact", "headers": hdrs, "content": blob},
        "206": {"description": "one byte range", "headers": {**hdrs, "Content-Range": {"schema": STR}},
                "content": blob},
        "304": {"description": "not modified"},
        "416": {"description": "range not satisfiable, malformed or overlapping",
                "headers": {"Content-Range": {"schema": STR}}, "content": json_content(ref("Error"))},
        **errors(400, 403, 404),
    }


def memfault_paths() -> dict:
    poll_params = [
        query("device_serial", {"type": "string", "pattern": "^[-a-zA-Z0-9_]{1,128}$"},
              "required unless device_id is given"),
        query("device_id", description="alias of device_serial (Nordic's iOS library)"),
        query("hardware_version", {"type": "string", "maxLength": 255}, "hardware the project has never seen: "
              "204, memfault-reason unknown_hardware_version", required=True),
        query("software_type", required=True),
        query("current_version", {"type": "string", "maxLength": 255}),
    ]
    no_update = {"204": {"description": "No update; memfault-reason says why",
                         "headers": {"memfault-reason": {"schema": STR}}}}
    key = [{"projectKey": []}]
    return {
        "/api/v0/releases/latest": {"get": op(
            "The release this device should install next", "device: memfault",
            {**ok(ref("DeviceRelease")), **no_update, **errors(400, 403)}, params=poll_params, security=key)},
        "/api/v0/releases/latest/url": {"get": op(
            "Its signed download URL only", "device: memfault",
            {"200": {"description": "the URL, no trailing newline",
                     "content": {"text/plain": {"schema": {"type": "string", "format": "uri"}}}},
             **no_update, **errors(400, 403)}, params=poll_params, security=key)},
        "/dl/{payload_id}/{filename}": {"get": op(
            "Artifact bytes from a signed URL", "artifacts", blob_responses(), params=SIGNED + BODY_RANGE,
            security=[])},
        "/api/v0/uploads/{token}": {"put": {
            **op("The signed upload target (no Authorization)", "artifacts", {
                "200": {"description": "stored", "headers": {"ETag": {"schema": STR}}},
                **errors(400, 403, 404, 409, 413, 500, 503, 507)}, params=SIGNED, security=[]),
            "requestBody": {"required": True,
                            "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                "format": "binary"}}}}}},
    }


def _ddi_op(summary: str, answer: dict, codes: tuple[int, ...], **kw) -> dict:
    """A DDI operation: `answer`, 304 on a matching ETag, a bare 401 and JSON errors `codes`."""
    return op(summary, DDI_TAG, {**answer, "304": {"description": "If-None-Match matched the ETag"},
                                 "401": {"$ref": "#/components/responses/DdiUnauthorized"}, **errors(*codes)},
              security=DDI_SECURITY, **kw)


def _ddi_paths_at(root: str) -> dict:
    b = root + DDI_BASE
    etag = [header("If-None-Match")]
    history = [query("actionHistory", INT, "the N newest device messages (N < 0: 100)")]
    accepted = {"200": {"description": "accepted (empty body)"}}
    return {
        b: {"get": _ddi_op("Base poll", ok(ref("DdiControllerBase")), (400, 429), params=etag)},
        b + "/deploymentBase/{actionId}": {"get": _ddi_op(
            "The update to install", ok(ref("DdiDeploymentBase")), (400, 404),
            params=etag + history + [query("c", description="ignored")])},
        b + "/deploymentBase/{actionId}/feedback": {"post": _ddi_op(
            "Progress or result", accepted, (400, 404, 410, 413), body=ref("DdiFeedback"), body_required=True)},
        b + "/cancelAction/{actionId}": {"get": _ddi_op(
            "The server asks the device to stop an action", ok(ref("DdiCancelAction")), (400, 404), params=etag)},
        b + "/cancelAction/{actionId}/feedback": {"post": _ddi_op(
            "The device's answer to a cancel", accepted, (400, 404, 405, 410, 413),
            body=ref("DdiFeedback"), body_required=True)},
        b + "/configData": {"put": _ddi_op(
            "Device attributes", {"200": {"description": "stored (empty body)"}}, (400, 413),
            body=ref("DdiConfigData"), body_required=True)},
        b + "/installedBase/{actionId}": {"get": _ddi_op(
            "A finished action's document", ok(ref("DdiInstalledBase")), (400, 404), params=etag + history)},
        b + "/softwaremodules/{softwareModuleId}/artifacts": {"get": _ddi_op(
            "The module's artifacts", ok(arr(ref("DdiArtifact"))), (400, 404), params=etag)},
        b + "/softwaremodules/{softwareModuleId}/artifacts/{fileName}": {"get": op(
            "Artifact bytes (or its .MD5SUM): the device's Authorization header, or a signed URL", DDI_TAG,
            {**blob_responses(), "401": {"$ref": "#/components/responses/DdiUnauthorized"}},
            params=[query("e"), query("s")] + BODY_RANGE, security=DDI_SECURITY + [{}])},
    }


def ddi_paths() -> dict:
    paths: dict = {}
    for root in DDI_ROOTS:
        paths.update(_ddi_paths_at(root))
    return paths
