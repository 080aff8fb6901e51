"""Paths of the fleet: cohorts, staging, the version matrix, devices and their DDI state."""
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
    preview_params,
    previewable,
    query,
    ref,
)
from gateway.api.openapi.helpers import data_of as d


def cohort_paths() -> dict:
    return {
        P + "/cohorts": {
            "get": mgmt("Cohorts", ok(d(arr(ref("Cohort"))))),
            "post": mgmt("Create a cohort", {**ok(d(ref("Cohort")), 201, "created"), "409": ERROR},
                         body=BODIES["cohort_create"], codes=(400, 401, 403, 404, 409, 413, 415)),
        },
        P + "/cohorts/{cohort}": {
            "get": mgmt("One cohort", ok(d(ref("Cohort")))),
            "patch": mgmt("Change cohort settings", {**ok(d(ref("Cohort"))), **awaiting_approval()},
                          body=BODIES["cohort_patch"], codes=WITH_BODY),
        },
        P + "/cohorts/{cohort}/staging": {"post": mgmt(
            "Stage or unstage devices for the cohort's staged rollout (409 when it has none)",
            {**ok(d(previewable(ref("StagingResult")))), **awaiting_approval()}, body=BODIES["staging"],
            codes=WITH_BODY + (409,))},
        P + "/cohorts/{cohort}/version-matrix": {"get": mgmt(
            "Current x next version device counts", ok(d(ref("VersionMatrix"))), params=[query("software_type")])},
    }


def device_paths() -> dict:
    return {
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
            "patch": mgmt("Move a device to a cohort", {**ok(d(previewable(ref("Device")))), **awaiting_approval()},
                          body=BODIES["device_patch"], body_required=True, codes=WITH_BODY + (409,)),
        },
        P + "/devices/{serial}/release-override": {
            "put": mgmt("Pin a device to a release", {**ok(d(previewable(ref("Device")))), **awaiting_approval()},
                        body=BODIES["override"], body_required=True, codes=WITH_BODY + (409,)),
            "delete": mgmt("Clear the pin", {**ok(d(previewable(ref("Device")))), **awaiting_approval()},
                           params=preview_params(), codes=(400, 401, 403, 404, 409)),
        },
        P + "/devices/{serial}/history": {"get": mgmt("Version history", ok(d(arr(ref("DeviceHistoryEntry")))))},
        P + "/devices/{serial}/inspect": {"get": mgmt(
            "What the device gets next on each protocol, and why", ok(d(ref("Inspection"))),
            params=[query("software_type"), query("current_version"), query("hardware_version")])},
    }


def device_ddi_paths() -> dict:
    return {
        P + "/devices/{serial}/ddi": {"get": mgmt("DDI attributes of the device", ok(d(ref("DeviceDdi"))))},
        P + "/devices/{serial}/ddi/token": {
            "post": mgmt("Set or rotate the device's TargetToken (shown once)",
                         ok(d(obj({"device_serial": STR, "target_token": STR}))), body=BODIES["ddi_token"],
                         codes=WITH_BODY),
            "delete": mgmt("Remove the TargetToken", no_content("removed")),
        },
        P + "/devices/{serial}/ddi/actions": {"get": mgmt("DDI actions, newest first", ok(d(arr(ref("DdiAction")))))},
        P + "/devices/{serial}/ddi/actions/{action_id}/retry": {"post": mgmt(
            "Offer a failed release again",
            {**ok(d(obj({"device_serial": STR, "action_id": INT, "release_id": INT, "version": STR,
                         "cleared_failures": INT}))), **awaiting_approval()}, codes=CONFLICT)},
        P + "/ddi/releases": {"get": mgmt("DDI actions per release and status", ok(d(arr(ref("DdiReleaseStats")))))},
    }
