"""Small builders the OpenAPI document is written with: schemas (ref/obj/arr/null), responses
(ok/errors), parameters (path_param/query/header) and operations (op/mgmt)."""
from __future__ import annotations

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


def data_of(schema: dict) -> dict:
    """The management API's {"data": ...} envelope."""
    return obj({"data": schema})


# -- responses -----------------------------------------------------------------------------------------

def json_content(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


ERROR = {"$ref": "#/components/responses/Error"}


def errors(*codes: int) -> dict:
    """JSON errors `codes`, plus what errors.instrument may answer on any route: 400 (bad
    query encoding), 414 (URL too long), 429 (a caller over a limit: failed authentications of
    a source, throttled logins; with Retry-After), 431 (headers too large) and 503 (overloaded,
    database down)."""
    out = {str(c): ERROR for c in sorted({400, 414, 429, 431, *codes})}
    out["503"] = {"$ref": "#/components/responses/Unavailable"}
    return out


def ok(schema: dict | None, status: int = 200, description: str = "OK") -> dict:
    r = {"description": description}
    if schema is not None:
        r["content"] = json_content(schema)
    return {str(status): r}


def awaiting_approval() -> dict:
    """The 202 of a change held for approval in a cohort that requires it (services.protect)."""
    return ok(data_of(ref("ActivationRequest")), 202, "waiting for approval")


def no_content(description: str) -> dict:
    """A bodiless 204."""
    return {"204": {"description": description}}


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

# -- operations ----------------------------------------------------------------------------------------

MANAGEMENT_SECURITY = [{"orgToken": []}, {"basic": []}]
# the codes of a management operation that takes a JSON body (413: too large, 415: not JSON)
WITH_BODY = (400, 401, 403, 404, 413, 415)
# ... and of one that may conflict with the current state
CONFLICT = (400, 401, 403, 404, 409)


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


# every change that can be previewed (services/preview.py): `dry_run` answers the preview,
# `preview_token` applies the change only if it still does what the preview said (else 409)
PREVIEW_PROPS = {"dry_run": BOOL, "preview_token": STR}


def previewable(schema: dict) -> dict:
    """A change's answer, or its preview when asked for a dry run."""
    return {"anyOf": [schema, ref("Preview")]}


def preview_params() -> list:
    """dry_run and preview_token as query parameters (for DELETE)."""
    return [query("dry_run", {"type": "boolean"}, "answer what the change would do, change nothing"),
            query("preview_token", description="apply only if it still does what that preview said")]
