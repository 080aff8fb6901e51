"""Management API for the fleet: cohorts and their settings, devices (provisioning, moves,
staging, release overrides) and project keys."""
from __future__ import annotations

from aiohttp import web

from gateway.api.mgmt.auth import context_for
from gateway.api.mgmt.common import PREVIEW_FIELDS, P, body_json, data, preview_args
from gateway.crypto.tokens import hash_token, new_project_key
from gateway.domain.errors import BadRequest, NotFound
from gateway.domain.fields import (
    _SLUG_CHARS,
    MAX_ID,
    is_id,
    need_str,
    parse_id,
    parse_int,
)
from gateway.http.errors import add_route, json_response
from gateway.memory.mirror import SERIAL_RE_TEXT
from gateway.services import Change, devices, fleet
from gateway.services.releases import one_release
from gateway.store import fleet as fleet_store
from gateway.store import releases as releases_store

# -- cohorts ----------------------------------------------------------------------------------

async def list_cohorts(request: web.Request) -> web.Response:
    return data(await fleet.list_cohorts(await context_for(request)))


async def create_cohort(request: web.Request) -> web.Response:
    ctx = await context_for(request)
    body = await body_json(request, {"slug": None, "name": None})
    slug = need_str(body, "slug", charset=_SLUG_CHARS, required=False)
    name = need_str(body, "name", charset=None, required=slug is None) or slug
    slug = slug or "".join(ch if ch in _SLUG_CHARS else "-" for ch in name.lower())
    return data(await fleet.create_cohort(ctx, slug, name), status=201)


async def get_cohort(request: web.Request) -> web.Response:
    return data(await fleet.get_cohort(await context_for(request), request.match_info["cohort"]))


# -- devices ----------------------------------------------------------------------------------

async def list_devices(request: web.Request) -> web.Response:
    ctx = await context_for(request)
    q = request.query
    per_page = "per_page" if "per_page" in q else "limit"
    limit = min(parse_int(q.get(per_page), per_page, default=100, lo=0, hi=MAX_ID), 1000)
    # a page before the first is the first; past 10**9 its OFFSET would leave bigint range
    page = max(parse_int(q.get("page"), "page", default=1, lo=-MAX_ID, hi=10**9), 1)
    total, rows = await fleet.list_devices(ctx, cohort=q.get("cohort"), hardware_version=q.get("hardware_version"),
                                           limit=limit, page=page)
    return json_response({"data": rows, "paging": {"total_count": total, "page": page, "per_page": limit}})


def _cohort_slug(body: dict, *, default: str | None = None) -> str:
    """`cohort` is a slug or an object with one (the shape devices are answered with)."""
    slug = body.get("cohort")
    if slug is None and default is not None:
        return default
    if isinstance(slug, dict):
        slug = slug.get("slug")
    if not isinstance(slug, str) or not slug:
        raise BadRequest("cohort is required (a cohort slug, or an object with one)")
    return slug


_COHORT_REF = {"slug": None}


async def create_device(request: web.Request) -> web.Response:
    """Factory provisioning: serial + hardware version (+ cohort)."""
    ctx = await context_for(request)
    body = await body_json(request, {"device_serial": None, "hardware_version": None, "cohort": _COHORT_REF})
    serial = need_str(body, "device_serial", charset=None)
    if not SERIAL_RE_TEXT.match(serial):
        raise BadRequest("device_serial must match ^[-a-zA-Z0-9_]+$ (at most 128 characters)")
    hw = need_str(body, "hardware_version")
    return _answer(await devices.create_device(ctx, serial, hw, _cohort_slug(body, default="default")))


def _answer(change: Change) -> web.Response:
    """201 for something created, 202 for a request waiting for approval, else 200."""
    return data(change.data, status=202 if change.pending else 201 if change.created else 200)


async def get_device(request: web.Request) -> web.Response:
    return data(await fleet.get_device(await context_for(request), request.match_info["serial"]))


async def patch_device(request: web.Request) -> web.Response:
    """PATCH {"cohort": slug} moves a device (and un-stages it)."""
    ctx = await context_for(request)
    body = await body_json(request, {"cohort": _COHORT_REF, "hardware_version": None, **PREVIEW_FIELDS})
    if "hardware_version" in body:
        raise BadRequest("hardware_version is immutable")
    return _answer(await devices.move_device(ctx, request.match_info["serial"], _cohort_slug(body),
                                             **preview_args(body)))


_COHORT_SETTINGS = {"name": None, "version_checking": None, "protected": None, "requires_approval": None,
                    "ddi_polling_interval": None, "ddi_update_type": None}


async def patch_cohort(request: web.Request) -> web.Response:
    """PATCH cohort settings: name, version_checking, ddi_polling_interval, ddi_update_type,
    protected, requires_approval. Protection and approval settings need the manager role."""
    ctx = await context_for(request)
    body = await body_json(request, _COHORT_SETTINGS)
    changes: dict = {}
    for key in ("version_checking", "protected", "requires_approval"):
        if key in body:
            if not isinstance(body[key], bool):
                raise BadRequest(f"{key} must be a boolean")
            changes[key] = body[key]
    if "name" in body:
        changes["name"] = need_str(body, "name", charset=None)
    if "ddi_polling_interval" in body:
        v = body["ddi_polling_interval"]
        if not isinstance(v, int) or isinstance(v, bool) or not 10 <= v <= 7 * 86400:
            raise BadRequest("ddi_polling_interval must be an integer number of seconds from 10 to 604800")
        changes["ddi_polling_interval"] = v
    if "ddi_update_type" in body:
        if body["ddi_update_type"] not in ("attempt", "forced"):
            raise BadRequest("ddi_update_type must be 'attempt' or 'forced'")
        changes["ddi_update_type"] = body["ddi_update_type"]
    return _answer(await devices.update_cohort(ctx, request.match_info["cohort"], changes))


async def stage_devices(request: web.Request) -> web.Response:
    """POST cohorts/{slug}/staging: stage or unstage named devices (`serials`), or up to `limit`
    devices matching filters (`current_version`, `software_type`, `hardware_version`) that are
    not so yet, most recently seen first (`order`: last_seen | random)."""
    ctx = await context_for(request)
    body = await body_json(request, {"staged": None, "serials": None, "limit": None, "order": None,
                                     "current_version": None, "software_type": None, "hardware_version": None,
                                     **PREVIEW_FIELDS})
    staged = body.get("staged", True)
    if not isinstance(staged, bool):
        raise BadRequest("staged must be a boolean")
    serials = body.get("serials")
    limit = body.get("limit")
    order = body.get("order", "last_seen")
    if serials is not None and (not isinstance(serials, list) or not all(isinstance(x, str) for x in serials)):
        raise BadRequest("serials must be a list of device serials")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise BadRequest("limit must be a non-negative integer")
    if order not in ("last_seen", "random"):
        raise BadRequest("order must be 'last_seen' or 'random'")
    filters = {k: need_str(body, k, required=False, charset=None) for k in
               ("current_version", "software_type", "hardware_version")}
    return _answer(await devices.stage(ctx, request.match_info["cohort"], staged=staged, serials=serials,
                                       limit=limit, order=order, filters=filters, **preview_args(body)))


async def _change_override(request: web.Request, *, clear: bool) -> web.Response:
    ctx = await context_for(request)
    body = await body_json(request, PREVIEW_FIELDS if clear else {"release": None, "software_type": None,
                                                                  **PREVIEW_FIELDS})
    preview = preview_args(body or request.query)
    release_ref = None if clear else _override_body(body)
    serial = request.match_info["serial"]
    release_id = None
    if release_ref is not None:
        async with ctx.pool.acquire() as conn:
            if await fleet_store.device_row(conn, ctx.pid, serial) is None:
                raise NotFound(f"device {serial} not found")
            release_id = await _override_release(conn, ctx.pid, release_ref)
    return _answer(await devices.set_override(ctx, serial, release_id, **preview))


async def _override_release(conn, project_id: int, release_ref: dict) -> int:
    """The release an override names: a release id, or a version (with its software type)."""
    ref, software_type = release_ref["release"], release_ref.get("software_type")
    if is_id(ref) and not await releases_store.find_releases(conn, project_id, ref, None):
        rows = await releases_store.releases_with_payloads(conn, project_id, release_id=int(ref))
        if not rows:
            raise NotFound(f"release {ref!r} not found")
        return rows[0]["id"]
    return (await one_release(conn, project_id, ref, None, software_type))["id"]


def _override_body(body: dict) -> dict:
    ref = body.get("release")
    if isinstance(ref, int) and not isinstance(ref, bool):
        ref = str(ref)
    if not isinstance(ref, str) or not ref:
        raise BadRequest("release is required: a release id or version")
    software_type = body.get("software_type")
    if software_type is not None and not isinstance(software_type, str):
        raise BadRequest("software_type must be a string")
    return {"release": ref, "software_type": software_type}


async def set_override(request: web.Request) -> web.Response:
    """PUT devices/{serial}/release-override {"release": version or id, "software_type"?}."""
    return await _change_override(request, clear=False)


async def clear_override(request: web.Request) -> web.Response:
    """DELETE devices/{serial}/release-override."""
    return await _change_override(request, clear=True)


async def device_history(request: web.Request) -> web.Response:
    return data(await fleet.device_history(await context_for(request), request.match_info["serial"]))


# -- project keys ---------------------------------------------------------------------------

async def list_keys(request: web.Request) -> web.Response:
    return data(await devices.list_keys(await context_for(request)))


async def create_key(request: web.Request) -> web.Response:
    """POST project-keys {name, cohort_override?}: the key is returned once, stored hashed. For
    a cohort that requires approval the answer is 202 with the request and the key, which
    works once the request is approved."""
    ctx = await context_for(request)
    ctx.ident.require("manager")
    body = await body_json(request, {"name": None, "cohort_override": None})
    name = need_str(body, "name", required=False, charset=None) or ""
    override = need_str(body, "cohort_override", required=False, charset=None)
    key = new_project_key()
    change = await devices.create_key(ctx, name, hash_token(key), override)
    return _answer(Change({**change.data, "key": key}, created=change.created, pending=change.pending))


async def revoke_key(request: web.Request) -> web.Response:
    ctx = await context_for(request)
    ctx.ident.require("manager")
    await body_json(request, {})
    await devices.revoke_key(ctx, parse_id(request.match_info["id"], "project key"))
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    add_route(app, "GET", P + "/cohorts", list_cohorts)
    add_route(app, "POST", P + "/cohorts", create_cohort)
    add_route(app, "GET", P + "/cohorts/{cohort}", get_cohort)
    add_route(app, "GET", P + "/devices", list_devices)
    add_route(app, "POST", P + "/devices", create_device)
    add_route(app, "GET", P + "/devices/{serial}", get_device)
    add_route(app, "PATCH", P + "/devices/{serial}", patch_device)
    add_route(app, "PATCH", P + "/cohorts/{cohort}", patch_cohort)
    add_route(app, "POST", P + "/cohorts/{cohort}/staging", stage_devices)
    add_route(app, "PUT", P + "/devices/{serial}/release-override", set_override)
    add_route(app, "DELETE", P + "/devices/{serial}/release-override", clear_override)
    add_route(app, "GET", P + "/devices/{serial}/history", device_history)
    add_route(app, "GET", P + "/project-keys", list_keys)
    add_route(app, "POST", P + "/project-keys", create_key)
    add_route(app, "DELETE", P + "/project-keys/{id}", revoke_key)
