"""The OpenAPI 3.1 document of the whole HTTP surface, served at GET /api/openapi.json.

Built once at import from small helpers. Schemas describe what the handlers really return
(their `*_json` functions): every field they always send is `required`, extra fields are
allowed so that the document states a floor, not a ceiling. tests/test_openapi.py keeps the
document and `app.router` in step and validates real responses against it; tests/test_fuzz.py
runs schemathesis against a live gateway with it.
"""
from __future__ import annotations

import copy
import re

import orjson
from aiohttp import web

from gateway.http.errors import add_route
from gateway.api.mgmt.common import P

O = "/api/v0/organizations/{org}"
DDI_ROOTS = ("", "/api/v0/hawkbit")
DDI_BASE = "/{tenant}/controller/v1/{controllerId}"

# -- schema helpers ----------------------------------------------------------------------------------

STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
DATE = {"type": "string", "format": "date-time"}


def null(schema: dict) -> dict:
    """`schema` or null."""
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    out["type"] = [schema["type"], "null"]
    return out


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: dict, *, optional: tuple[str, ...] = (), extra: bool = True) -> dict:
    """An object whose properties are all required except `optional`."""
    out = {"type": "object", "properties": props, "required": [k for k in props if k not in optional]}
    if not extra:
        out["additionalProperties"] = False
    return out


def arr(items: dict) -> dict:
    return {"type": "array", "items": items}


STRING_MAP = {"type": "object", "additionalProperties": STR}
ANY_OBJECT = {"type": "object"}
# every change that can wait for approval in a cohort that requires it (services.protect)
REQUEST_ACTIONS = ("activate", "deactivate", "device.move", "device.override", "cohort.stage", "cohort.update",
                   "project_key.create", "release.add_payload", "release.update", "release.delete",
                   "device.ddi_retry", "project.update")

SCHEMAS: dict[str, dict] = {
    "Error": obj({"error": obj({"message": STR, "type": STR})}),
    "Project": obj({
        "id": INT, "slug": STR, "name": STR, "organization": obj({"slug": STR}), "strict_semver": BOOL,
        "ddi_tenant": STR, "ddi_software_type": null(STR), "ddi_hardware_version": null(STR),
        "poll_limit_per_minute": null(INT), "created_date": null(DATE)}),
    "Artifact": obj({
        "id": INT, "type": STR, "hardware_version": STR, "filename": STR, "file_size": INT, "md5": STR,
        "sha1": STR, "sha256": STR, "extra_info": null(STRING_MAP)}),
    "Release": obj({
        "id": INT, "version": STR, "software_type": STR, "delta_from": null(STR), "is_delta": BOOL,
        "must_pass_through": BOOL, "revision": STR, "notes": STR, "extra_info": null(STRING_MAP),
        "created_by": STR, "created_date": null(DATE), "updated_date": null(DATE),
        "artifacts": arr(ref("Artifact")), "active_deployments": INT}, optional=("active_deployments",)),
    "ReleaseRef": obj({"id": INT, "version": STR, "revision": STR, "software_type": STR, "delta_from": null(STR)}),
    "CohortRef": obj({"id": INT, "slug": STR, "name": STR}),
    "Deployment": obj({
        "id": INT, "type": {"enum": ["normal", "staged_rollout"]},
        "status": {"enum": ["in_progress", "done", "cancelled"]}, "active": BOOL,
        "rollout_percent": {"type": "integer", "minimum": 0, "maximum": 100},
        "release": ref("ReleaseRef"), "cohort": ref("CohortRef"), "deployer": STR, "deployed_date": null(DATE),
        "deactivated_by": null(STR), "deactivated_date": null(DATE)}),
    "ActivationRequest": obj({
        "id": INT, "action": {"enum": list(REQUEST_ACTIONS)},
        "status": {"enum": ["pending", "approved", "rejected"]}, "cohort": STR,
        "release": null(obj({"id": INT, "version": STR, "delta_from": null(STR), "software_type": STR})),
        "type": {"enum": ["normal", "staged_rollout"]}, "rollout_percent": null(INT),
        "deployment_id": null(INT), "change": null(ANY_OBJECT), "requested_by": STR, "decided_by": null(STR), "created_date": null(DATE),
        "decided_date": null(DATE)}),
    "DeploymentEvent": obj({
        "deployment_id": INT, "action": STR, "actor": STR, "release": STR, "delta_from": null(STR),
        "software_type": STR, "cohort": STR, "before": null(ANY_OBJECT), "after": null(ANY_OBJECT),
        "date": null(DATE)}),
    "Cohort": obj({
        "id": INT, "slug": STR, "name": STR, "is_default": BOOL, "protected": BOOL, "version_checking": BOOL,
        "ddi_polling_interval": INT, "ddi_update_type": {"enum": ["attempt", "forced"]},
        "requires_approval": BOOL, "created_date": null(DATE), "device_count": INT}, optional=("device_count",)),
    "Device": obj({
        "device_serial": STR, "hardware_version": null(STR), "cohort": ref("CohortRef"), "staged": BOOL,
        "release_override_id": null(INT), "software_versions": STRING_MAP, "last_seen": null(DATE),
        "created_date": null(DATE)}),
    "DeviceHistoryEntry": obj({"software_type": STR, "version": STR, "previous_version": null(STR),
                               "protocol": STR, "date": null(DATE)}),
    "StagingResult": obj({"changed": INT, "staged": INT, "devices": INT}),
    "ProjectKey": obj({"id": INT, "name": STR, "cohort_override": null(STR), "created_date": null(DATE),
                       "revoked_date": null(DATE)}),
    "VersionMatrix": obj({
        "cohort": STR, "software_type": STR, "rows": arr(STR), "columns": arr(STR), "cells": arr(arr(INT)),
        "reasons": {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": INT}},
        "row_totals": arr(INT), "staged_share": arr({"type": "number"}), "devices": INT, "staged_devices": INT,
        "active_releases": arr(obj({
            "version": STR, "delta_from": null(STR), "kind": {"enum": ["full", "delta", "must_pass_through"]},
            "staged": BOOL, "rollout_percent": null(INT), "deployment_id": INT})),
        "target_version": null(STR), "staged_target_version": null(STR)}),
    "Inspection": obj({
        "device_serial": STR, "registered": BOOL, "hardware_version": null(STR), "cohort": STR, "staged": BOOL,
        "software": arr(obj({
            "software_type": STR, "current_version": null(STR),
            "memfault": obj({"release": null(STR), "release_id": null(INT), "reason": STR}),
            "rules": ANY_OBJECT, "with_project_key_cohort_override": arr(ANY_OBJECT)}))}),
    "AuditEntry": obj({"id": INT, "actor": STR, "action": STR, "object": STR, "before": {}, "after": {},
                       "date": null(DATE)}),
    "Token": obj({"id": INT, "name": STR, "role": {"enum": ["viewer", "editor", "manager"]},
                  "can_activate_protected": BOOL, "created_date": null(DATE), "revoked_date": null(DATE)}),
    "User": obj({"id": INT, "email": STR, "role": {"enum": ["viewer", "editor", "manager"]},
                 "created_date": null(DATE)}),
    "DeviceDdi": obj({"device_serial": STR, "hardware_version": null(STR), "software_type": null(STR),
                      "attributes": STRING_MAP, "config_requested": BOOL, "target_token_set": BOOL}),
    "DdiAction": obj({
        "id": INT, "status": {"enum": ["open", "canceling", "succeeded", "failed", "canceled"]},
        "hawkbit_status": STR, "release_id": null(INT), "software_type": STR, "version": STR,
        "delta_from": null(STR), "reason": null(STR), "cancel_rejected": BOOL, "created_date": null(DATE),
        "retrieved_date": null(DATE), "closed_date": null(DATE), "retried_date": null(DATE),
        "retried_by": null(STR), "feedback": arr(ANY_OBJECT)}),
    "DdiReleaseStats": obj({
        "release_id": INT, "software_type": STR, "version": STR, "delta_from": null(STR),
        "actions": {"type": "object", "additionalProperties": INT}}),
    # -- device APIs
    "DeviceRelease": obj({
        "id": INT, "created_date": STR, "updated_date": STR, "version": STR, "display_name": STR, "notes": STR,
        "revision": STR, "min_version": STR, "must_pass_through": BOOL, "is_delta": BOOL,
        "delta_from": null(STR), "is_forced": null(BOOL), "reason": STR, "extra_info": null(STRING_MAP),
        "count_devices": INT,
        "artifacts": {"type": "array", "minItems": 1, "items": obj({
            "id": INT, "created_date": STR, "updated_date": STR, "type": STR, "hardware_version": STR,
            "filename": STR, "file_size": INT, "url": {"type": "string", "format": "uri"}, "md5": STR,
            "sha1": STR, "sha256": STR, "build_id": STR, "extra_info": null(STRING_MAP)})},
        "signature": obj({"algorithm": {"enum": ["ed25519"]}, "key_id": STR,
                          "manifest": {"type": "string", "description": "canonical JSON the signature covers"},
                          "value": {"type": "string", "description": "base64 Ed25519 signature"}})},
        optional=("signature",)),
    "SigningKey": obj({"algorithm": {"enum": ["ed25519"]}, "key_id": STR, "public_key_pem": STR,
                       "public_key": STR, "created_date": STR}),
    "DdiLink": obj({"href": STR}),
    "DdiControllerBase": obj({
        "config": obj({"polling": obj({"sleep": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]:[0-5][0-9]$"}})}),
        "_links": {"type": "object", "additionalProperties": ref("DdiLink")}}, optional=("_links",)),
    "DdiArtifact": obj({
        "filename": STR, "hashes": obj({"sha1": STR, "md5": STR, "sha256": STR}), "size": INT,
        "_links": {"type": "object", "additionalProperties": ref("DdiLink")}}),
    "DdiDeployment": obj({
        "download": {"enum": ["skip", "attempt", "forced"]}, "update": {"enum": ["skip", "attempt", "forced"]},
        "chunks": arr(obj({"part": STR, "version": STR, "name": STR, "artifacts": arr(ref("DdiArtifact")),
                           "metadata": arr(obj({"key": STR, "value": STR}))}, optional=("metadata",)))}),
    "DdiActionHistory": obj({"status": STR, "messages": arr(STR)}),
    "DdiDeploymentBase": obj({"id": STR, "deployment": ref("DdiDeployment"), "actionHistory": ref("DdiActionHistory")},
                             optional=("actionHistory",)),
    "DdiInstalledBase": obj({"id": STR, "deployment": ref("DdiDeployment"), "actionHistory": ref("DdiActionHistory")},
                            optional=("actionHistory",)),
    "Readiness": obj({"database": BOOL, "mirror_loaded": BOOL, "notifications": BOOL}),
    "DdiCancelAction": obj({"id": STR, "cancelAction": obj({"stopId": STR})}),
    "DdiFeedback": obj({
        "timestamp": INT,
        "status": obj({
            "execution": {"enum": ["closed", "proceeding", "canceled", "scheduled", "rejected", "resumed",
                                   "downloaded", "download"]},
            "result": obj({"finished": {"enum": ["success", "failure", "none"]},
                           "progress": obj({"cnt": INT, "of": INT}, optional=("of",))}, optional=("progress",)),
            "code": INT, "details": arr(STR)}, optional=("code", "details"))}, optional=("timestamp",)),
    "DdiConfigData": obj({
        "mode": {"enum": ["merge", "replace", "remove"]},
        "data": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string", "maxLength": 128}}},
        optional=("mode",)),
}


def data_of(schema: dict) -> dict:
    """The management API's {"data": ...} envelope."""
    return obj({"data": schema})


# -- responses -----------------------------------------------------------------------------------------

def json_content(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


ERROR = {"$ref": "#/components/responses/Error"}
RESPONSES = {
    "Error": {"description": "An error: {\"error\": {\"message\", \"type\"}}", "content": json_content(ref("Error"))},
    "Unavailable": {
        "description": "Overloaded, or the database is unreachable: retry after Retry-After seconds",
        "headers": {"Retry-After": {"schema": INT}}, "content": json_content(ref("Error"))},
    "DdiUnauthorized": {"description": "The Authorization header does not authenticate the device (empty body, "
                                       "as hawkBit)"},
}


def errors(*codes: int) -> dict:
    """JSON errors `codes`, plus what errors.instrument may answer on any route: 400 (bad
    query encoding), 414 (URL too long), 431 (headers too large) and 503 (overloaded, database
    down)."""
    out = {str(c): ERROR for c in sorted({400, 414, 431, *codes})}
    out["503"] = {"$ref": "#/components/responses/Unavailable"}
    return out


def ok(schema: dict | None, status: int = 200, description: str = "OK") -> dict:
    r = {"description": description}
    if schema is not None:
        r["content"] = json_content(schema)
    return {str(status): r}


# -- parameters ----------------------------------------------------------------------------------------

def path_param(name: str, description: str = "", schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema or STR}


def query(name: str, schema: dict | None = None, description: str = "", required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema or STR}


def header(name: str, schema: dict | None = None, description: str = "") -> dict:
    return {"name": name, "in": "header", "required": False, "description": description, "schema": schema or STR}


SLUG = {"type": "string", "pattern": "^[a-z0-9_-]{1,128}$"}
ID = {"type": "string", "pattern": "^[0-9]{1,9}$"}  # a string: the server answers 404 for anything else
SERIAL = {"type": "string", "pattern": "^[-a-zA-Z0-9_]{1,128}$"}
PATH_PARAMS = {
    "org": path_param("org", "organization slug", SLUG),
    "project": path_param("project", "project slug (also the DDI tenant)", SLUG),
    "release": path_param("release", "a release id, or a full release's version"),
    "id": path_param("id", "numeric id", ID),
    "cohort": path_param("cohort", "cohort slug", SLUG),
    "serial": path_param("serial", "device serial", SERIAL),
    "type": path_param("type", "software type"),
    "version": path_param("version", "software version"),
    "action_id": path_param("action_id", "DDI action id", ID),
    "token": path_param("token", "upload token"),
    "payload_id": path_param("payload_id", "artifact (payload) id", ID),
    "filename": path_param("filename", "the artifact's file name"),
    "tenant": path_param("tenant", "project slug; any value with a GatewayToken"),
    "controllerId": path_param("controllerId", "device serial", SERIAL),
    "actionId": path_param("actionId", "action id", {"type": "string", "pattern": "^[0-9]{1,18}$"}),
    "softwareModuleId": path_param("softwareModuleId", "software module (= artifact) id", ID),
    "fileName": path_param("fileName", "artifact file name, or it + .MD5SUM"),
}

SIGNED = [query("e", {"type": "string"}, "expiry (Unix seconds) of the signed URL", required=True),
          query("s", {"type": "string"}, "signature of the path and expiry", required=True)]

BODY_RANGE = [header("Range", description="one byte range (a-b, a-, -n); several disjoint ranges get the "
                                         "whole body; malformed, reversed or overlapping ones get 416"),
              header("If-Range"), header("If-None-Match"), header("If-Modified-Since")]

MANAGEMENT_SECURITY = [{"orgToken": []}, {"basic": []}]


def op(summary: str, tag: str, responses: dict, *, params: list | None = None, body: dict | None = None,
       body_required: bool = False, security: list | None = None, description: str = "") -> dict:
    out = {"summary": summary, "tags": [tag], "responses": responses}
    if description:
        out["description"] = description
    if params:
        out["parameters"] = params
    if body is not None:
        out["requestBody"] = {"required": body_required, "content": json_content(body)}
    if security is not None:
        out["security"] = security
    return out


def mgmt(summary: str, responses: dict, *, codes: tuple[int, ...] = (400, 401, 403, 404), tag: str = "management",
         **kw) -> dict:
    """A management operation: org token or Basic auth, JSON errors."""
    return op(summary, tag, {**responses, **errors(*codes)}, security=MANAGEMENT_SECURITY, **kw)


# -- request bodies --------------------------------------------------------------------------------------

ROLE = {"enum": ["viewer", "editor", "manager"]}
BODIES = {
    "project_patch": {"type": "object", "properties": {
        "strict_semver": BOOL, "ddi_software_type": null(STR), "ddi_hardware_version": null(STR),
        "poll_limit_per_minute": null({"type": "integer", "minimum": 1})}},
    "upload": {"type": "object", "properties": {"kind": STR, "size": {"type": "integer", "minimum": 0}}},
    "ota_payload": {"type": "object", "required": ["file", "software_version", "hardware_version"], "properties": {
        "file": obj({"token": STR, "md5": STR, "name": STR}, optional=("md5", "name"), extra=False),
        "software_version": obj({"version": {"anyOf": [STR, {"type": "array", "items": STR,
                                                              "minItems": 2, "maxItems": 2}]},
                                 "software_type": STR, "revision": STR}, optional=("revision",), extra=False),
        "hardware_version": STR, "notes": STR, "must_pass_through": BOOL, "extra_info": null(STRING_MAP),
        "firmware_type": STR, "component_version": STR, "component_base_version": STR}},
    "release_patch": {"type": "object", "properties": {"notes": STR, "revision": STR,
                                                       "extra_info": null(STRING_MAP)}},
    "deployment": {"type": "object", "required": ["release", "cohort"], "properties": {
        "type": {"enum": ["normal", "staged_rollout"]},
        "release": {"anyOf": [STR, {"type": "array", "items": STR, "minItems": 2, "maxItems": 2}]},
        "cohort": STR, "rollout_percent": {"type": "integer", "minimum": 0, "maximum": 100}, "software_type": STR}},
    "cohort_create": {"type": "object", "properties": {"slug": STR, "name": STR}},
    "cohort_patch": {"type": "object", "properties": {
        "name": STR, "version_checking": BOOL, "protected": BOOL, "requires_approval": BOOL,
        "ddi_polling_interval": {"type": "integer", "minimum": 10, "maximum": 604800},
        "ddi_update_type": {"enum": ["attempt", "forced"]}}},
    "staging": {"type": "object", "properties": {
        "staged": BOOL, "serials": arr(STR), "limit": {"type": "integer", "minimum": 0},
        "order": {"enum": ["last_seen", "random"]}, "current_version": STR, "software_type": STR,
        "hardware_version": STR}},
    "device_create": {"type": "object", "required": ["device_serial", "hardware_version"], "properties": {
        "device_serial": {"type": "string", "pattern": "^[-a-zA-Z0-9_]{1,128}$"}, "hardware_version": STR,
        "cohort": {"anyOf": [STR, obj({"slug": STR}, extra=False)]}}},
    "device_patch": {"type": "object", "required": ["cohort"], "properties": {
        "cohort": {"anyOf": [STR, obj({"slug": STR}, extra=False)]}}},
    "override": {"type": "object", "required": ["release"], "properties": {
        "release": {"anyOf": [STR, INT]}, "software_type": STR}},
    "key_create": {"type": "object", "properties": {"name": STR, "cohort_override": STR}},
    "token_create": {"type": "object", "required": ["name"], "properties": {
        "name": STR, "role": ROLE, "can_activate_protected": BOOL}},
    "user_create": {"type": "object", "required": ["email"], "properties": {
        "email": STR, "role": ROLE, "secret": {"type": "string", "minLength": 12}}},
    "ddi_token": {"type": "object", "properties": {"token": {"type": "string", "minLength": 16, "maxLength": 128}}},
}
# a body may hold only the fields listed (400 `unknown_field` for any other)
for _body in BODIES.values():
    _body["additionalProperties"] = False


# -- paths ----------------------------------------------------------------------------------------------------


def _management_paths() -> dict:
    d = data_of
    paths = {
        P: {
            "get": mgmt("The project", ok(d(ref("Project")))),
            "patch": mgmt("Change project settings (manager)", {**ok(d(ref("Project"))), **ok(d(ref("ActivationRequest")), 202, "waiting for approval")},
                           body=BODIES["project_patch"]),
        },
        P + "/signing-key": {
            "get": mgmt("The public key release manifests are signed with", ok(d(ref("SigningKey")))),
            "post": mgmt("Create or rotate the project's Ed25519 manifest key (manager)",
                         ok(d(ref("SigningKey")), 201, "key created")),
            "delete": mgmt("Stop signing manifests (manager)", {"204": {"description": "deleted"}}),
        },
        P + "/software_type_values": {"get": mgmt("Software types known to the project",
                                                  ok(d(arr(obj({"name": STR})))))},
        P + "/software_types/{type}/software_versions/{version}": {"get": mgmt(
            "A software version (release) by type and version",
            ok(d(obj({"version": STR, "software_type": STR, "release_id": INT}))))},
        P + "/upload": {"post": mgmt(
            "Start an upload: a signed PUT target", ok(d(obj({"upload_url": STR, "token": STR}))),
            body=BODIES["upload"], codes=(400, 401, 403, 404, 413, 415))},
        P + "/releases/ota_payload": {"post": mgmt(
            "Attach an uploaded file to a (new) release",
            {**ok(d(ref("Release")), 201, "release created"), **ok(d(ref("Release")), 200, "payload added"),
             **ok(d(ref("ActivationRequest")), 202, "waiting for approval"), "409": ERROR}, body=BODIES["ota_payload"], body_required=True,
            codes=(400, 401, 403, 404, 409, 413, 415))},
        P + "/releases": {"get": mgmt("Releases, newest first", ok(d(arr(ref("Release")))), params=[
            query("version"), query("software_type"), query("revision"), query("hardware_version")])},
        P + "/releases/{release}": {
            "get": mgmt("One release", ok(d(ref("Release")))),
            "patch": mgmt("Change notes, revision, extra_info", {**ok(d(ref("Release"))), **ok(d(ref("ActivationRequest")), 202, "waiting for approval")},
                          body=BODIES["release_patch"],
                          codes=(400, 401, 403, 404, 413, 415)),
            "delete": mgmt("Delete a release that is active nowhere", {"204": {"description": "deleted"}, **ok(d(ref("ActivationRequest")), 202, "waiting for approval")},
                           codes=(400, 401, 403, 404, 409)),
        },
        P + "/deployments": {
            "get": mgmt("Deployments (activations)", ok(d(arr(ref("Deployment")))), params=[
                query("cohort"), query("release"), query("delta_from"), query("delta_to"),
                query("status", description="`active` for active ones only")]),
            "post": mgmt("Activate a release in a cohort, or change its rollout",
                         {**ok(d(ref("Deployment")), 201, "activated"), **ok(d(ref("Deployment")), 200, "changed"),
                          **ok(d(ref("ActivationRequest")), 202, "waiting for approval")},
                         body=BODIES["deployment"], body_required=True, codes=(400, 401, 403, 404, 413, 415)),
        },
        P + "/deployments/{id}": {"delete": mgmt(
            "Deactivate (pull) a deployment",
            {**ok(d(ref("Deployment"))), **ok(d(ref("ActivationRequest")), 202, "waiting for approval")},
            codes=(400, 401, 403, 404, 409))},
        P + "/deployment-history": {"get": mgmt("Activation events, newest first",
                                                ok(d(arr(ref("DeploymentEvent")))))},
        P + "/activation-requests": {"get": mgmt("Activation requests", ok(d(arr(ref("ActivationRequest")))), params=[
            query("status", {"enum": ["pending", "approved", "rejected", "all"]})])},
        P + "/activation-requests/{id}/approve": {"post": mgmt(
            "Approve a request (another identity)", ok(d(ref("ActivationRequest"))), codes=(400, 401, 403, 404, 409))},
        P + "/activation-requests/{id}/reject": {"post": mgmt(
            "Reject a request (another identity)", ok(d(ref("ActivationRequest"))), codes=(400, 401, 403, 404, 409))},
        P + "/cohorts": {
            "get": mgmt("Cohorts", ok(d(arr(ref("Cohort"))))),
            "post": mgmt("Create a cohort", {**ok(d(ref("Cohort")), 201, "created"), "409": ERROR},
                         body=BODIES["cohort_create"], codes=(400, 401, 403, 404, 409, 413, 415)),
        },
        P + "/cohorts/{cohort}": {
            "get": mgmt("One cohort", ok(d(ref("Cohort")))),
            "patch": mgmt("Change cohort settings", {**ok(d(ref("Cohort"))), **ok(d(ref("ActivationRequest")), 202, "waiting for approval")}, body=BODIES["cohort_patch"],
                          codes=(400, 401, 403, 404, 413, 415)),
        },
        P + "/cohorts/{cohort}/staging": {"post": mgmt(
            "Stage or unstage devices of the cohort", {**ok(d(ref("StagingResult"))), **ok(d(ref("ActivationRequest")), 202, "waiting for approval")}, body=BODIES["staging"],
            codes=(400, 401, 403, 404, 413, 415))},
        P + "/cohorts/{cohort}/version-matrix": {"get": mgmt(
            "Current x next version device counts", ok(d(ref("VersionMatrix"))), params=[query("software_type")])},
        P + "/devices": {
            "get": {**mgmt("Devices, paged", ok(obj({
                "data": arr(ref("Device")), "paging": obj({"total_count": INT, "page": INT, "per_page": INT})})),
                params=[query("cohort"), query("hardware_version"), query("page", INT), query("per_page", INT),
                        query("limit", INT, "alias of per_page")])},
            "post": mgmt("Provision a device", {**ok(d(ref("Device")), 201, "created"), "409": ERROR},
                         body=BODIES["device_create"], body_required=True, codes=(400, 401, 403, 404, 409, 413, 415)),
        },
        P + "/devices/{serial}": {
            "get": mgmt("One device", ok(d(ref("Device")))),
            "patch": mgmt("Move a device to a cohort", {**ok(d(ref("Device"))), **ok(d(ref("ActivationRequest")), 202, "waiting for approval")}, body=BODIES["device_patch"],
                          body_required=True, codes=(400, 401, 403, 404, 413, 415)),
        },
        P + "/devices/{serial}/release-override": {
            "put": mgmt("Pin a device to a release", {**ok(d(ref("Device"))), **ok(d(ref("ActivationRequest")), 202, "waiting for approval")}, body=BODIES["override"],
                        body_required=True, codes=(400, 401, 403, 404, 413, 415)),
            "delete": mgmt("Clear the pin", {**ok(d(ref("Device"))), **ok(d(ref("ActivationRequest")), 202, "waiting for approval")}),
        },
        P + "/devices/{serial}/history": {"get": mgmt("Version history", ok(d(arr(ref("DeviceHistoryEntry")))))},
        P + "/devices/{serial}/inspect": {"get": mgmt(
            "What the device gets next on each protocol, and why", ok(d(ref("Inspection"))),
            params=[query("software_type"), query("current_version"), query("hardware_version")])},
        P + "/devices/{serial}/ddi": {"get": mgmt("DDI attributes of the device", ok(d(ref("DeviceDdi"))))},
        P + "/devices/{serial}/ddi/token": {
            "post": mgmt("Set or rotate the device's TargetToken (shown once)",
                         ok(d(obj({"device_serial": STR, "target_token": STR}))), body=BODIES["ddi_token"],
                         codes=(400, 401, 403, 404, 413, 415)),
            "delete": mgmt("Remove the TargetToken", {"204": {"description": "removed"}}),
        },
        P + "/devices/{serial}/ddi/actions": {"get": mgmt("DDI actions, newest first", ok(d(arr(ref("DdiAction")))))},
        P + "/devices/{serial}/ddi/actions/{action_id}/retry": {"post": mgmt(
            "Offer a failed release again",
            {**ok(d(obj({"device_serial": STR, "action_id": INT, "release_id": INT, "version": STR,
                      "cleared_failures": INT}))), **ok(d(ref("ActivationRequest")), 202, "waiting for approval")}, codes=(400, 401, 403, 404, 409))},
        P + "/ddi/releases": {"get": mgmt("DDI actions per release and status", ok(d(arr(ref("DdiReleaseStats")))))},
        P + "/project-keys": {
            "get": mgmt("Project keys", ok(d(arr(ref("ProjectKey"))))),
            "post": mgmt("Create a project key (shown once; manager)",
                         {**ok(d({"allOf": [ref("ProjectKey"), obj({"key": STR})]}), 201, "created"),
                          **ok(d({"allOf": [ref("ActivationRequest"), obj({"key": STR})]}), 202,
                               "waiting for approval; the key works once approved")},
                         body=BODIES["key_create"], codes=(400, 401, 403, 404, 413, 415)),
        },
        P + "/project-keys/{id}": {"delete": mgmt("Revoke a project key (manager)", {"204": {"description": "revoked"}})},
        P + "/audit-log": {"get": mgmt("Audit log, newest first", ok(d(arr(ref("AuditEntry")))), params=[
            query("actor"), query("action"), query("limit", INT), query("before", INT, "entries older than this id")])},
        O + "/tokens": {
            "get": mgmt("Org API tokens (manager)", ok(d(arr(ref("Token"))))),
            "post": mgmt("Create an org token (shown once; manager)",
                         ok(d(obj({"id": INT, "name": STR, "role": ROLE, "can_activate_protected": BOOL,
                                   "token": STR})), 201, "created"),
                         body=BODIES["token_create"], body_required=True, codes=(400, 401, 403, 404, 413, 415)),
        },
        O + "/tokens/{id}": {"delete": mgmt("Revoke an org token (manager)", {"204": {"description": "revoked"}})},
        O + "/users": {
            "get": mgmt("Users (manager)", ok(d(arr(ref("User"))))),
            "post": mgmt("Create a user (manager); a generated secret is shown once",
                         {**ok(d(obj({"id": INT, "email": STR, "role": ROLE, "secret": STR}, optional=("secret",))),
                               201, "created"), "409": ERROR},
                         body=BODIES["user_create"], body_required=True, codes=(400, 401, 403, 404, 409, 413, 415)),
        },
    }
    return paths


def _device_paths() -> dict:
    poll_params = [
        query("device_serial", {"type": "string", "pattern": "^[-a-zA-Z0-9_]{1,128}$"},
              "required unless device_id is given"),
        query("device_id", description="alias of device_serial (Nordic's iOS library)"),
        query("hardware_version", required=True), query("software_type", required=True),
        query("current_version", {"type": "string", "maxLength": 255}),
    ]
    no_update = {"204": {"description": "No update; memfault-reason says why",
                         "headers": {"memfault-reason": {"schema": STR}}}}
    key = [{"projectKey": []}]
    paths = {
        "/api/v0/releases/latest": {"get": op(
            "The release this device should install next", "device: memfault",
            {**ok(ref("DeviceRelease")), **no_update, **errors(400, 403)}, params=poll_params, security=key)},
        "/api/v0/releases/latest/url": {"get": op(
            "Its signed download URL only", "device: memfault",
            {"200": {"description": "the URL, no trailing newline",
                     "content": {"text/plain": {"schema": {"type": "string", "format": "uri"}}}},
             **no_update, **errors(400, 403)}, params=poll_params, security=key)},
        "/dl/{payload_id}/{filename}": {"get": op(
            "Artifact bytes from a signed URL", "artifacts", _blob_responses(), params=SIGNED + BODY_RANGE,
            security=[])},
        "/api/v0/uploads/{token}": {"put": {
            **op("The signed upload target (no Authorization)", "artifacts", {
                "200": {"description": "stored", "headers": {"ETag": {"schema": STR}}},
                **errors(400, 403, 404, 413)}, params=SIGNED, security=[]),
            "requestBody": {"required": True,
                            "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                "format": "binary"}}}}}},
    }
    ddi_security = [{"ddiToken": []}]
    ddi_json = {"304": {"description": "If-None-Match matched the ETag"},
                "401": {"$ref": "#/components/responses/DdiUnauthorized"}}
    etag = [header("If-None-Match")]
    history = [query("actionHistory", INT, "the N newest device messages (N < 0: 100)")]
    for root in DDI_ROOTS:
        b = root + DDI_BASE
        tag = "device: hawkBit DDI"
        paths.update({
            b: {"get": op("Base poll", tag, {**ok(ref("DdiControllerBase")), **ddi_json, **errors(400, 429)},
                          params=etag, security=ddi_security)},
            b + "/deploymentBase/{actionId}": {"get": op(
                "The update to install", tag, {**ok(ref("DdiDeploymentBase")), **ddi_json, **errors(400, 404)},
                params=etag + history + [query("c", description="ignored")], security=ddi_security)},
            b + "/deploymentBase/{actionId}/feedback": {"post": op(
                "Progress or result", tag, {"200": {"description": "accepted (empty body)"}, **ddi_json,
                                            **errors(400, 404, 410, 413)},
                body=ref("DdiFeedback"), body_required=True, security=ddi_security)},
            b + "/cancelAction/{actionId}": {"get": op(
                "The server asks the device to stop an action", tag,
                {**ok(ref("DdiCancelAction")), **ddi_json, **errors(400, 404)}, params=etag, security=ddi_security)},
            b + "/cancelAction/{actionId}/feedback": {"post": op(
                "The device's answer to a cancel", tag, {"200": {"description": "accepted (empty body)"}, **ddi_json,
                                                         **errors(400, 404, 405, 410, 413)},
                body=ref("DdiFeedback"), body_required=True, security=ddi_security)},
            b + "/configData": {"put": op(
                "Device attributes", tag, {"200": {"description": "stored (empty body)"}, **ddi_json,
                                           **errors(400, 413)},
                body=ref("DdiConfigData"), body_required=True, security=ddi_security)},
            b + "/installedBase/{actionId}": {"get": op(
                "A finished action's document", tag, {**ok(ref("DdiInstalledBase")), **ddi_json, **errors(400, 404)},
                params=etag + history, security=ddi_security)},
            b + "/softwaremodules/{softwareModuleId}/artifacts": {"get": op(
                "The module's artifacts", tag, {**ok(arr(ref("DdiArtifact"))), **ddi_json, **errors(400, 404)},
                params=etag, security=ddi_security)},
            b + "/softwaremodules/{softwareModuleId}/artifacts/{fileName}": {"get": op(
                "Artifact bytes (or its .MD5SUM): the device's Authorization header, or a signed URL", tag,
                {**_blob_responses(), "401": {"$ref": "#/components/responses/DdiUnauthorized"}},
                params=[query("e"), query("s")] + BODY_RANGE, security=ddi_security + [{}])},
        })
    return paths


def _blob_responses() -> dict:
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


def _operations_paths() -> dict:
    return {
        "/metrics": {"get": op("Prometheus metrics", "operations", {
            "200": {"description": "text exposition format", "content": {"text/plain": {"schema": STR}}},
            **errors(400)}, security=[])},
        "/healthz": {"get": op("Liveness", "operations", {
            **ok(obj({"status": {"const": "ok"}, "pid": INT})), **errors(400)}, security=[])},
        "/readyz": {"get": op("Readiness: database, mirror and notifications", "operations", {
            "200": {"description": "ready", "content": json_content(ref("Readiness"))},
            "503": {"description": "not ready", "content": json_content(ref("Readiness"))},
            "400": ERROR, "414": ERROR}, security=[])},
        "/api/openapi.json": {"get": op("This document", "operations", {
            **ok(ANY_OBJECT), **errors(400)}, security=[])},
    }


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
    paths = {**_device_paths(), **_management_paths(), **_operations_paths()}
    for path, item in paths.items():
        for operation in item.values():
            _path_parameters(path, operation)
    _with_head(paths)
    schemas = dict(SCHEMAS)
    return {
        "openapi": "3.1.0",
        "info": {"title": "ota-gateway", "version": "0.1.0",
                 "description": "hawkBit DDI and Memfault device APIs, Memfault-shaped management API, "
                                "signed artifact delivery. Every JSON error is {\"error\": {\"message\", "
                                "\"type\"}}, except DDI's bare 401."},
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in ("device: memfault", "device: hawkBit DDI", "artifacts", "management",
                                       "operations")],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": RESPONSES,
            "securitySchemes": {
                "orgToken": {"type": "http", "scheme": "bearer", "description": "org API token"},
                "basic": {"type": "http", "scheme": "basic",
                          "description": "`:<org token>` or `<email>:<secret>`"},
                "projectKey": {"type": "apiKey", "in": "header", "name": "Memfault-Project-Key"},
                "ddiToken": {"type": "apiKey", "in": "header", "name": "Authorization",
                             "description": "`GatewayToken <project key>` or `TargetToken <device token>`"},
            },
        },
    }


DOCUMENT = build()
_BODY = orjson.dumps(DOCUMENT)


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type="application/json", headers={"Cache-Control": "no-cache"})


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/api/openapi.json", openapi_json, shed=False)
