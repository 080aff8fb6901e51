"""The document's components: the schemas of what the handlers really return (their `*_json`
functions), the shared responses and the security schemes."""
from __future__ import annotations

from gateway.api.openapi.helpers import (
                   ANY_OBJECT,
                   BOOL,
                   DATE,
                   INT,
                   STR,
                   STRING_MAP,
                   arr,
                   json_content,
                   null,
                   obj,
                   ref,
)

# every change that can wait for approval in a cohort that requires it (services.protect)
REQUEST_ACTIONS = ("activate", "deactivate", "device.move", "device.override", "cohort.stage", "cohort.update",
                   "project_key.create", "release.add_payload", "release.update", "release.delete",
                   "device.ddi_retry", "project.update")

MANAGEMENT_SCHEMAS: dict[str, dict] = {
    "Error": obj({"error": obj({"message": STR, "type": STR})}),
    "Project": obj({
        "id": INT, "slug": STR, "name": STR, "organization": obj({"slug": STR}), "strict_semver": BOOL,
        "ddi_tenant": STR, "ddi_software_type": null(STR), "ddi_hardware_version": null(STR),
        "poll_limit_per_minute": null(INT), "ddi_gateway_token": BOOL, "created_date": null(DATE)}),
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
        "deactivated_by": null(STR), "deactivated_date": null(DATE),
        "stage_newcomers": null(BOOL), "staged_devices": null(INT), "cohort_devices": null(INT),
        "staged_fraction": null({"type": "number"})}),
    "ActivationRequest": obj({
        "id": INT, "action": {"enum": list(REQUEST_ACTIONS)},
        "status": {"enum": ["pending", "approved", "rejected"]}, "cohort": STR,
        "release": null(obj({"id": INT, "version": STR, "delta_from": null(STR), "software_type": STR})),
        "type": {"enum": ["normal", "staged_rollout"]}, "rollout_percent": null(INT),
        "deployment_id": null(INT), "change": null(ANY_OBJECT), "requested_by": STR, "decided_by": null(STR),
        "created_date": null(DATE), "decided_date": null(DATE)}),
    "DeploymentEvent": obj({
        "deployment_id": INT, "action": STR, "actor": STR, "release": STR, "delta_from": null(STR),
        "software_type": STR, "cohort": STR, "before": null(ANY_OBJECT), "after": null(ANY_OBJECT),
        "date": null(DATE)}),
    "Cohort": obj({
        "id": INT, "slug": STR, "name": STR, "is_default": BOOL, "protected": BOOL, "version_checking": BOOL,
        "ddi_polling_interval": INT, "ddi_update_type": {"enum": ["attempt", "forced"]},
        "requires_approval": BOOL, "created_date": null(DATE), "device_count": INT}, optional=("device_count",)),
    "Device": obj({
        "device_serial": STR, "hardware_version": null(STR), "reported_hardware_version": null(STR),
        "cohort": ref("CohortRef"), "staged": BOOL, "staged_software_types": arr(STR),
        "release_override_id": null(INT), "software_versions": STRING_MAP, "last_seen": null(DATE),
        "created_date": null(DATE)}),
    "DeviceHistoryEntry": obj({"software_type": STR, "version": STR, "previous_version": null(STR),
                               "protocol": STR, "date": null(DATE)}),
    "Preview": obj({
        "dry_run": BOOL, "preview_token": STR, "would_need_approval": BOOL, "devices_moving": INT, "bytes": INT,
        "changes": arr(obj({"cohort": STR, "software_type": STR, "hardware_version": null(STR),
                            "current_version": null(STR), "before": {"type": "object"}, "after": {"type": "object"},
                            "to": {"type": "object"}})),
        "ddi_cancels": arr(obj({"device_serial": STR, "action_id": INT, "version": STR})),
        "result": {"type": "object"}}),
    "StagingResult": obj({"changed": INT, "staged": INT, "devices": INT, "deployment_id": INT, "software_type": STR,
                          "release": STR}),
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
}

# the device APIs (Memfault, hawkBit DDI) and operations
DEVICE_SCHEMAS: dict[str, dict] = {
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

SCHEMAS: dict[str, dict] = {**MANAGEMENT_SCHEMAS, **DEVICE_SCHEMAS}

RESPONSES = {
    "Error": {"description": "An error: {\"error\": {\"message\", \"type\"}}", "content": json_content(ref("Error"))},
    "Unavailable": {
        "description": "Overloaded, or the database is unreachable: retry after Retry-After seconds",
        "headers": {"Retry-After": {"schema": INT}}, "content": json_content(ref("Error"))},
    "DdiUnauthorized": {"description": "The Authorization header does not authenticate the device (empty body, "
                                       "as hawkBit)"},
}

SECURITY_SCHEMES = {
    "orgToken": {"type": "http", "scheme": "bearer", "description": "org API token"},
    "basic": {"type": "http", "scheme": "basic",
              "description": "`:<org token>` or `<email>:<secret>`"},
    "projectKey": {"type": "apiKey", "in": "header", "name": "Memfault-Project-Key"},
    "ddiToken": {"type": "apiKey", "in": "header", "name": "Authorization",
                 "description": "`GatewayToken <project key>` or `TargetToken <device token>`"},
}
