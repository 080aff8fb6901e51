"""The management API's request bodies. A body may hold only the fields listed: any other is
answered 400 `unknown_field`."""
from __future__ import annotations

from gateway.api.openapi.helpers import (
    BOOL,
    INT,
    PREVIEW_PROPS,
    STR,
    STRING_MAP,
    arr,
    null,
    obj,
)

ROLE = {"enum": ["viewer", "editor", "manager"]}
BODIES = {
    "project_patch": {"type": "object", "properties": {
        "strict_semver": BOOL, "ddi_software_type": null(STR), "ddi_hardware_version": null(STR),
        "poll_limit_per_minute": null({"type": "integer", "minimum": 1}), "ddi_gateway_token": BOOL}},
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
        "cohort": STR, "rollout_percent": {"type": "integer", "minimum": 0, "maximum": 100}, "software_type": STR,
        "stage_newcomers": BOOL, **PREVIEW_PROPS}},
    "cohort_create": {"type": "object", "properties": {"slug": STR, "name": STR}},
    "cohort_patch": {"type": "object", "properties": {
        "name": STR, "version_checking": BOOL, "protected": BOOL, "requires_approval": BOOL,
        "ddi_polling_interval": {"type": "integer", "minimum": 10, "maximum": 604800},
        "ddi_update_type": {"enum": ["attempt", "forced"]}}},
    "staging": {"type": "object", "properties": {
        "staged": BOOL, "serials": arr(STR), "limit": {"type": "integer", "minimum": 0},
        "order": {"enum": ["last_seen", "random"]}, "current_version": STR, "software_type": STR,
        "hardware_version": STR, **PREVIEW_PROPS}},
    "device_create": {"type": "object", "required": ["device_serial", "hardware_version"], "properties": {
        "device_serial": {"type": "string", "pattern": "^[-a-zA-Z0-9_]{1,128}$"}, "hardware_version": STR,
        "cohort": {"anyOf": [STR, obj({"slug": STR}, extra=False)]}}},
    "device_patch": {"type": "object", "required": ["cohort"], "properties": {
        "cohort": {"anyOf": [STR, obj({"slug": STR}, extra=False)]}, **PREVIEW_PROPS}},
    "override": {"type": "object", "required": ["release"], "properties": {
        "release": {"anyOf": [STR, INT]}, "software_type": STR, **PREVIEW_PROPS}},
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
