"""Paths of releases: software types and versions, uploads, payloads and the releases themselves."""
from __future__ import annotations

from gateway.api.mgmt.common import P
from gateway.api.openapi.bodies import BODIES
from gateway.api.openapi.helpers import (
    CONFLICT,
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


def release_paths() -> dict:
    return {
        P + "/software_type_values": {"get": mgmt("Software types known to the project",
                                                  ok(d(arr(obj({"name": STR})))))},
        P + "/software_types/{type}/software_versions/{version}": {"get": mgmt(
            "A software version (release) by type and version",
            ok(d(obj({"version": STR, "software_type": STR, "release_id": INT}))))},
        P + "/upload": {"post": mgmt(
            "Start an upload: a signed PUT target", ok(d(obj({"upload_url": STR, "token": STR}))),
            body=BODIES["upload"], codes=WITH_BODY)},
        P + "/releases/ota_payload": {"post": mgmt(
            "Attach an uploaded file to a (new) release",
            {**ok(d(ref("Release")), 201, "release created"), **ok(d(ref("Release")), 200, "payload added"),
             **awaiting_approval(), "409": ERROR},
            body=BODIES["ota_payload"], body_required=True, codes=(400, 401, 403, 404, 409, 413, 415))},
        P + "/releases": {"get": mgmt("Releases, newest first", ok(d(arr(ref("Release")))), params=[
            query("version"), query("software_type"), query("revision"), query("hardware_version")])},
        P + "/releases/{release}": {
            "get": mgmt("One release", ok(d(ref("Release")))),
            "patch": mgmt("Change notes, revision, extra_info", {**ok(d(ref("Release"))), **awaiting_approval()},
                          body=BODIES["release_patch"], codes=WITH_BODY),
            "delete": mgmt("Delete a release that is active nowhere", {**no_content("deleted"), **awaiting_approval()},
                           codes=CONFLICT),
        },
    }
