"""Shared pieces of the management API: envelope, body parsing, field validation."""
from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from .appkeys import MIRROR
from . import store
from .errors import BadRequest, NotFound, json_response

P = "/api/v0/organizations/{org}/projects/{project}"
_SLUG_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+:")


def data(obj: Any, status: int = 200) -> web.Response:
    return json_response({"data": obj}, status=status)


async def body_json(request: web.Request) -> dict:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def need_str(obj: dict, key: str, label: str | None = None, *, required: bool = True,
             charset: set | None = _NAME_CHARS, max_len: int = 128) -> str | None:
    label = label or key
    v = obj.get(key)
    if v is None or v == "":
        if required:
            raise BadRequest(f"{label} is required")
        return None
    if not isinstance(v, str):
        raise BadRequest(f"{label} must be a string")
    if len(v) > max_len or (charset is not None and not set(v) <= charset):
        raise BadRequest(f"{label} must be 1-{max_len} characters of [a-zA-Z0-9-_.+:]"
                         if charset is _NAME_CHARS else f"{label} is invalid")
    return v


async def refresh(request: web.Request, *messages: str) -> None:
    """Read-your-writes: reload this process's mirror now; other processes follow the NOTIFY."""
    await request.app[MIRROR].apply(set(messages))


def iso(ts) -> str | None:
    return ts.isoformat() if ts is not None else None


async def one_release(conn, project_id: int, version: str, from_version: str | None, software_type: str | None):
    """The release named by version (and delta from-version), disambiguated by software type."""
    rels = [r for r in await store.find_releases(conn, project_id, version, from_version)
            if software_type is None or r["software_type"] == software_type]
    label = f"{from_version} -> {version}" if from_version else version
    if not rels:
        raise NotFound(f"release {label!r} not found")
    if len(rels) > 1:
        raise BadRequest(f"release {label!r} exists for software types "
                         f"{', '.join(r['software_type'] for r in rels)}: add software_type")
    return rels[0]
