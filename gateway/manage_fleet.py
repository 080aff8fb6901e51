"""Management API for the fleet: cohorts and their settings, devices (provisioning, moves,
staging, release overrides) and project keys."""
from __future__ import annotations

from aiohttp import web

from . import store
from .appkeys import POOL
from .errors import BadRequest, Conflict, Forbidden, NotFound, add_route, json_response
from .manage_auth import context_for, project_for
from .manage_common import _SLUG_CHARS, P, body_json, data, iso, need_str, one_release, refresh
from .mirror import SERIAL_RE_TEXT
from .services import fleet
from .services.fleet import cohort_json, device_json
from .tokens import hash_token, new_project_key


# -- cohorts ----------------------------------------------------------------------------------

async def list_cohorts(request: web.Request) -> web.Response:
    return data(await fleet.list_cohorts(await context_for(request)))


async def create_cohort(request: web.Request) -> web.Response:
    ident, p = await project_for(request)
    body = await body_json(request)
    slug = need_str(body, "slug", charset=_SLUG_CHARS, required=False)
    name = need_str(body, "name", charset=None, required=slug is None) or slug
    slug = slug or "".join(ch if ch in _SLUG_CHARS else "-" for ch in name.lower())
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await store.create_cohort(conn, p["id"], slug, name)
        if row is None:
            raise Conflict(f"cohort {slug!r} already exists")
        await store.audit(conn, p["id"], ident.actor, "cohort.create", f"cohort:{slug}", None, {"name": name})
        await store.notify(conn, f"project:{p['id']}")
    await refresh(request, f"project:{p['id']}")
    return data(cohort_json(row), status=201)


async def get_cohort(request: web.Request) -> web.Response:
    return data(await fleet.get_cohort(await context_for(request), request.match_info["cohort"]))


# -- devices ----------------------------------------------------------------------------------

async def list_devices(request: web.Request) -> web.Response:
    ctx = await context_for(request)
    q = request.query
    try:
        limit = min(int(q.get("per_page", q.get("limit", 100))), 1000)
        page = max(int(q.get("page", 1)), 1)
    except ValueError:
        raise BadRequest("per_page and page must be integers") from None
    total, rows = await fleet.list_devices(ctx, cohort=q.get("cohort"), hardware_version=q.get("hardware_version"),
                                           limit=limit, page=page)
    return json_response({"data": rows, "paging": {"total_count": total, "page": page, "per_page": limit}})


async def create_device(request: web.Request) -> web.Response:
    """Factory provisioning: serial + hardware version (+ cohort)."""
    ident, p = await project_for(request)
    body = await body_json(request)
    serial = need_str(body, "device_serial", charset=None)
    if not SERIAL_RE_TEXT.match(serial):
        raise BadRequest("device_serial must match ^[-a-zA-Z0-9_]+$ (at most 128 characters)")
    hw = need_str(body, "hardware_version")
    cohort_slug = body.get("cohort") or "default"
    if isinstance(cohort_slug, dict):
        cohort_slug = cohort_slug.get("slug")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        cohort = await store.cohort_by_slug(conn, p["id"], cohort_slug) if isinstance(cohort_slug, str) else None
        if cohort is None:
            raise BadRequest(f"cohort {cohort_slug!r} not found")
        if not await store.create_device(conn, p["id"], serial, hw, cohort["id"]):
            raise Conflict(f"device {serial} already exists")
        await store.add_hardware_version(conn, p["id"], hw)
        await store.audit(conn, p["id"], ident.actor, "device.create", f"device:{serial}", None,
                          {"hardware_version": hw, "cohort": cohort["slug"]})
        await store.notify(conn, f"project:{p['id']}")
        await store.notify(conn, f"device:{p['id']}:{serial}")
        row = await store.device_row(conn, p["id"], serial)
    await refresh(request, f"project:{p['id']}", f"device:{p['id']}:{serial}")
    return data(device_json(row), status=201)


async def get_device(request: web.Request) -> web.Response:
    return data(await fleet.get_device(await context_for(request), request.match_info["serial"]))


async def patch_device(request: web.Request) -> web.Response:
    """PATCH {"cohort": slug} moves a device (and un-stages it)."""
    ident, p = await project_for(request)
    serial = request.match_info["serial"]
    body = await body_json(request)
    if "hardware_version" in body:
        raise BadRequest("hardware_version is immutable")
    slug = body.get("cohort")
    if isinstance(slug, dict):
        slug = slug.get("slug")
    if not isinstance(slug, str) or not slug:
        raise BadRequest("cohort is required (a cohort slug)")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        before = await store.device_row(conn, p["id"], serial)
        if before is None:
            raise NotFound(f"device {serial} not found")
        cohort = await store.cohort_by_slug(conn, p["id"], slug)
        if cohort is None:
            raise BadRequest(f"cohort {slug!r} not found")
        await store.move_device(conn, p["id"], serial, cohort["id"])
        await store.audit(conn, p["id"], ident.actor, "device.move", f"device:{serial}",
                          {"cohort": before["cohort_slug"]}, {"cohort": slug})
        await store.notify(conn, f"device:{p['id']}:{serial}")
        row = await store.device_row(conn, p["id"], serial)
    await refresh(request, f"device:{p['id']}:{serial}")
    return data(device_json(row))


async def patch_cohort(request: web.Request) -> web.Response:
    """PATCH cohort settings: name, version_checking, ddi_polling_interval, ddi_update_type,
    protected, requires_approval. Protection and approval settings need the manager role."""
    ident, p = await project_for(request)
    body = await body_json(request)
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
    unknown = set(body) - set(changes)
    if unknown:
        raise BadRequest(f"unknown cohort setting(s): {', '.join(sorted(unknown))}")
    if {"protected", "requires_approval"} & set(changes):
        ident.require("manager")
    slug = request.match_info["cohort"]
    async with request.app[POOL].acquire() as conn, conn.transaction():
        cohort = await store.cohort_by_slug(conn, p["id"], slug)
        if cohort is None:
            raise NotFound(f"cohort {slug!r} not found")
        if cohort["protected"] and not (ident.role == "manager" or ident.can_activate_protected):
            raise Forbidden(f"cohort {slug!r} is protected: its settings need the manager role")
        row = await store.update_cohort(conn, cohort["id"], changes)
        await store.audit(conn, p["id"], ident.actor, "cohort.update", f"cohort:{slug}",
                          {k: cohort[k] for k in changes}, changes)
        if "version_checking" in changes:
            await store.rebuild_resolution(conn, p["id"])
        else:
            await store.notify(conn, f"project:{p['id']}")
    await refresh(request, f"project:{p['id']}")
    return data(cohort_json(row))


async def stage_devices(request: web.Request) -> web.Response:
    """POST cohorts/{slug}/staging: stage or unstage named devices (`serials`), or up to `limit`
    devices matching filters (`current_version`, `software_type`, `hardware_version`) that are
    not so yet, most recently seen first (`order`: last_seen | random)."""
    ident, p = await project_for(request)
    body = await body_json(request)
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
    slug = request.match_info["cohort"]
    async with request.app[POOL].acquire() as conn, conn.transaction():
        cohort = await store.cohort_by_slug(conn, p["id"], slug)
        if cohort is None:
            raise NotFound(f"cohort {slug!r} not found")
        if serials is not None:
            found = await store.stage_serials(conn, p["id"], serials, staged, cohort_id=cohort["id"])
            missing = sorted(set(serials) - set(found))
            if missing:
                raise NotFound(f"not devices of cohort {slug!r}: {', '.join(missing[:20])}")
            changed = len(found)
        else:
            changed = await store.stage_filtered(conn, p["id"], cohort["id"], staged=staged, limit=limit,
                                                 order=order, **filters)
        total, staged_now = await store.cohort_staged_count(conn, cohort["id"])
        await store.audit(conn, p["id"], ident.actor, "cohort.stage" if staged else "cohort.unstage",
                          f"cohort:{slug}", None, {"changed": changed, "serials": serials, "limit": limit,
                                                   **{k: v for k, v in filters.items() if v}})
        msg = f"cohort-devices:{p['id']}:{cohort['id']}"
        await store.notify(conn, msg)
    await refresh(request, msg)
    return data({"changed": changed, "staged": staged_now, "devices": total})


async def _change_override(request: web.Request, *, clear: bool) -> web.Response:
    ident, p = await project_for(request)
    release_ref = None if clear else _override_body(await body_json(request))
    serial = request.match_info["serial"]
    async with request.app[POOL].acquire() as conn, conn.transaction():
        dev = await store.device_row(conn, p["id"], serial)
        if dev is None:
            raise NotFound(f"device {serial} not found")
        release_id = None
        if release_ref is not None:
            ref, software_type = release_ref["release"], release_ref.get("software_type")
            if ref.isdigit() and not await store.find_releases(conn, p["id"], ref, None):
                rows = await store.releases_with_payloads(conn, p["id"], release_id=int(ref))
                if not rows:
                    raise NotFound(f"release {ref!r} not found")
                release_id = rows[0]["id"]
            else:
                release_id = (await one_release(conn, p["id"], ref, None, software_type))["id"]
        await store.set_override(conn, p["id"], serial, release_id)
        await store.audit(conn, p["id"], ident.actor, "device.override" if release_id else "device.clear_override",
                          f"device:{serial}", {"release_override_id": dev["release_override_id"]},
                          {"release_override_id": release_id})
        await store.notify(conn, f"device:{p['id']}:{serial}")
        row = await store.device_row(conn, p["id"], serial)
    await refresh(request, f"device:{p['id']}:{serial}")
    return data(device_json(row))


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

def key_json(k) -> dict:
    return {"id": k["id"], "name": k["name"], "cohort_override": k["cohort_override"],
            "created_date": iso(k["created_at"]), "revoked_date": iso(k["revoked_at"])}


async def list_keys(request: web.Request) -> web.Response:
    _, p = await project_for(request)
    return data([key_json(k) for k in await store.list_project_keys(request.app[POOL], p["id"])])


async def create_key(request: web.Request) -> web.Response:
    """POST project-keys {name, cohort_override?}: the key is returned once, stored hashed."""
    ident, p = await project_for(request)
    ident.require("manager")
    body = await body_json(request)
    name = need_str(body, "name", required=False, charset=None) or ""
    override = need_str(body, "cohort_override", required=False, charset=None)
    key = new_project_key()
    async with request.app[POOL].acquire() as conn, conn.transaction():
        cohort_id = None
        if override:
            cohort = await store.cohort_by_slug(conn, p["id"], override)
            if cohort is None:
                raise BadRequest(f"cohort_override: cohort {override!r} not found")
            cohort_id = cohort["id"]
        kid = await store.create_project_key(conn, p["id"], name, hash_token(key), cohort_id)
        await store.audit(conn, p["id"], ident.actor, "project_key.create", f"project_key:{kid}", None,
                          {"name": name, "cohort_override": override})
        await store.notify(conn, "keys")
        row = next(k for k in await store.list_project_keys(conn, p["id"]) if k["id"] == kid)
    await refresh(request, "keys")
    return data({**key_json(row), "key": key}, status=201)


async def revoke_key(request: web.Request) -> web.Response:
    ident, p = await project_for(request)
    ident.require("manager")
    try:
        kid = int(request.match_info["id"])
    except ValueError:
        raise NotFound("project key not found") from None
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if not await store.revoke_project_key(conn, p["id"], kid):
            raise NotFound(f"project key {kid} not found or already revoked")
        await store.audit(conn, p["id"], ident.actor, "project_key.revoke", f"project_key:{kid}", None, None)
        await store.notify(conn, "keys")
    await refresh(request, "keys")
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
