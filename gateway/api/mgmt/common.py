"""Shared pieces of the management API: envelope, body parsing, field validation."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.domain.errors import BadRequest, TooLarge, UnsupportedMediaType
from gateway.http.errors import json_response
from gateway.http.jsonbody import parse_json

P = "/api/v0/organizations/{org}/projects/{project}"


def data(obj: Any, status: int = 200) -> web.Response:
    return json_response({"data": obj}, status=status)


def _json_media_type(content_type: str) -> bool:
    return content_type == "application/json" or (content_type.startswith("application/")
                                                   and content_type.endswith("+json"))


# The fields a body may have: a name maps to None (any value) or to the fields of the object
# it holds. Whatever else a body carries is refused (400 naming it) before anything is applied:
# a field we do not know (`dry_run`, a typo) must never be silently ignored.
Fields = Mapping[str, "Fields | None"]


def only_fields(obj: dict, fields: Fields, path: str = "") -> None:
    """400 naming the first field of `obj` (and of the objects it nests, as declared) that
    `fields` does not list."""
    for key, value in obj.items():
        name = f"{path}.{key}" if path else key
        if key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise BadRequest(f"unknown field {name[:80]!r} (this endpoint takes: {known})", type="unknown_field")
        sub = fields[key]
        if sub is not None and isinstance(value, dict):
            only_fields(value, sub, name)


async def body_json(request: web.Request, fields: Fields) -> dict:
    """The request body as a JSON object ({} when empty: memfault-cli <= 1.8 posts /upload
    without a body) with only the declared `fields`. 415 for a body of another media type, 413
    past the app's size limit, 400 for invalid UTF-8, invalid JSON, a non-object, NUL
    characters, numbers no field can hold, absurd nesting or an unknown field (`http.jsonbody`)."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        raise TooLarge(f"request body is too large: {e.text}") from None
    if not raw.strip():
        return {}
    # no type, or the generic octet-stream that HTTP libraries put on raw bytes, is taken as
    # JSON; a form, text or XML body is a client bug, answered before it is half understood
    if request.headers.get("Content-Type") and request.content_type != "application/octet-stream" \
            and not _json_media_type(request.content_type):
        raise UnsupportedMediaType(f"request body must be application/json, not {request.content_type[:80]}")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"request body is not valid UTF-8 (byte {e.start})", type="invalid_encoding") from None
    body = parse_json(raw, refuse_nul=True)
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    only_fields(body, fields)
    return body


# what every change endpoint also takes: a preview instead of the change, or the change only if
# it still does what a preview said (services/protect.run, services/preview.py)
PREVIEW_FIELDS = {"dry_run": None, "preview_token": None}


def preview_args(source) -> dict:
    """dry_run and preview_token of a change request, from its JSON body or (DELETE) its query
    string; 400 naming the field when mistyped."""
    dry = source.get("dry_run", False)
    if isinstance(dry, str):  # a query string
        if dry.lower() not in ("true", "1", "false", "0", ""):
            raise BadRequest("dry_run must be true or false")
        dry = dry.lower() in ("true", "1")
    if not isinstance(dry, bool):
        raise BadRequest("dry_run must be a boolean")
    token = source.get("preview_token")
    if token is not None and not isinstance(token, str):
        raise BadRequest("preview_token must be the token a dry run answered")
    if dry and token:
        raise BadRequest("dry_run and preview_token exclude each other: preview, then apply with the token")
    return {"dry_run": dry, "preview_token": token}
