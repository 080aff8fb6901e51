"""Shared pieces of the management API: envelope, body parsing, field validation."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway.domain.errors import BadRequest, TooLarge, UnsupportedMediaType
from gateway.http.errors import json_response

P = "/api/v0/organizations/{org}/projects/{project}"


def data(obj: Any, status: int = 200) -> web.Response:
    return json_response({"data": obj}, status=status)


def _json_media_type(content_type: str) -> bool:
    return content_type == "application/json" or (content_type.startswith("application/")
                                                   and content_type.endswith("+json"))


def _check_text(value, path: str = "body", depth: int = 0) -> None:
    """Reject what PostgreSQL text cannot hold (NUL) anywhere in a JSON document, and absurd nesting."""
    if depth > 32:
        raise BadRequest(f"{path} is nested more than 32 levels deep")
    if isinstance(value, str):
        if "\x00" in value:
            raise BadRequest(f"{path} contains a NUL character")
    elif isinstance(value, dict):
        for k, v in value.items():
            if "\x00" in k:
                raise BadRequest(f"{path} has a key containing a NUL character")
            _check_text(v, f"{path}.{k[:64]}" if path != "body" else k[:64], depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_text(v, f"{path}[{i}]", depth + 1)


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
    characters or an unknown field."""
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
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"request body is not valid JSON: {str(e)[:120]}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    _check_text(body)
    only_fields(body, fields)
    return body
