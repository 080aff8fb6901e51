"""Paths of the project itself and of its organization: settings, signing key, project keys,
audit log, org tokens and users."""
from __future__ import annotations

from gateway.api.mgmt.common import P
from gateway.api.openapi.bodies import BODIES, ROLE
from gateway.api.openapi.helpers import (
    BOOL,
    ERROR,
    INT,
    STR,
    WITH_BODY,
    arr,
    awaiting_approval,
    mgmt,
    no_content,
    obj,
    ok,
    query,
    ref,
)
from gateway.api.openapi.helpers import data_of as d

O = "/api/v0/organizations/{org}"


def project_paths() -> dict:
    return {
        P: {
            "get": mgmt("The project", ok(d(ref("Project")))),
            "patch": mgmt("Change project settings (manager)", {**ok(d(ref("Project"))), **awaiting_approval()},
                          body=BODIES["project_patch"]),
        },
        P + "/signing-key": {
            "get": mgmt("The public key release manifests are signed with", ok(d(ref("SigningKey")))),
            "post": mgmt("Create or rotate the project's Ed25519 manifest key (manager)",
                         ok(d(ref("SigningKey")), 201, "key created")),
            "delete": mgmt("Stop signing manifests (manager)", no_content("deleted")),
        },
    }


def org_paths() -> dict:
    return {
        P + "/project-keys": {
            "get": mgmt("Project keys", ok(d(arr(ref("ProjectKey"))))),
            "post": mgmt("Create a project key (shown once; manager)",
                         {**ok(d({"allOf": [ref("ProjectKey"), obj({"key": STR})]}), 201, "created"),
                          **ok(d({"allOf": [ref("ActivationRequest"), obj({"key": STR})]}), 202,
                               "waiting for approval; the key works once approved")},
                         body=BODIES["key_create"], codes=WITH_BODY),
        },
        P + "/project-keys/{id}": {"delete": mgmt("Revoke a project key (manager)", no_content("revoked"))},
        P + "/audit-log": {"get": mgmt("Audit log, newest first", ok(d(arr(ref("AuditEntry")))), params=[
            query("actor"), query("action"), query("limit", INT), query("before", INT, "entries older than this id")])},
        O + "/tokens": {
            "get": mgmt("Org API tokens (manager)", ok(d(arr(ref("Token"))))),
            "post": mgmt("Create an org token (shown once; manager)",
                         ok(d(obj({"id": INT, "name": STR, "role": ROLE, "can_activate_protected": BOOL,
                                   "token": STR})), 201, "created"),
                         body=BODIES["token_create"], body_required=True, codes=WITH_BODY),
        },
        O + "/tokens/{id}": {"delete": mgmt("Revoke an org token (manager)", no_content("revoked"))},
        O + "/users": {
            "get": mgmt("Users (manager)", ok(d(arr(ref("User"))))),
            "post": mgmt("Create a user (manager); a generated secret is shown once",
                         {**ok(d(obj({"id": INT, "email": STR, "role": ROLE, "secret": STR}, optional=("secret",))),
                               201, "created"), "409": ERROR},
                         body=BODIES["user_create"], body_required=True, codes=(400, 401, 403, 404, 409, 413, 415)),
        },
    }
