"""Management API for the fleet: cohorts and their settings, devices (provisioning, moves,
staging, release overrides) and project keys."""
from __future__ import annotations

from aiohttp import web

from . import store
from .appkeys import POOL
from .errors import BadRequest, Conflict, NotFound, add_route, json_response
from .manage_auth import project_for
from .manage_common import _SLUG_CHARS, P, body_json, data, iso, need_str, refresh
from .mirror import SERIAL_RE_TEXT


# -- cohorts ----------------------------------------------------------------------------------

def cohort_json(c) -> dict:
    out = {"id": c["id"], "slug": c["slug"], "name": c["name"], "is_default": c["is_default"],
           "protected": c["protected"], "version_checking": c["version_checking"],
           "ddi_polling_interval": c["ddi_polling_interval"], "ddi_update_type": c["ddi_update_type"],
           "created_date": iso(c["created_at"])}
    if "device_count" in c.keys():
        out["device_count"] = c["device_count"]
    return out


async def list_cohorts(request: web.Request) -> web.Response:
    _, p = await project_for(request)
    return data([cohort_json(c) for c in await store.list_cohorts(request.app[POOL], p["id"])])


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
    _, p = await project_for(request)
    slug = request.match_info["cohort"]
    row = next((c for c in await store.list_cohorts(request.app[POOL], p["id"]) if c["slug"] == slug), None)
    if row is None:
        raise NotFound(f"cohort {slug!r} not found")
    return data(cohort_json(row))


# -- devices ----------------------------------------------------------------------------------

def device_json(d) -> dict:
    return {"device_serial": d["serial"], "hardware_version": d["hardware_version"],
            "cohort": {"id": d["cohort_id"], "slug": d["cohort_slug"], "name": d["cohort_name"]},
            "staged": d["staged"], "release_override_id": d["release_override_id"],
            "software_versions": d["versions"], "last_seen": iso(d["last_seen"]),
            "created_date": iso(d["created_at"])}


async def list_devices(request: web.Request) -> web.Response:
    _, p = await project_for(request)
    q = request.query
    try:
        limit = min(int(q.get("per_page", q.get("limit", 100))), 1000)
        page = max(int(q.get("page", 1)), 1)
    except ValueError:
        raise BadRequest("per_page and page must be integers") from None
    total, rows = await store.list_devices(request.app[POOL], p["id"], cohort=q.get("cohort") or None,
                                           hardware_version=q.get("hardware_version") or None,
                                           limit=limit, offset=(page - 1) * limit)
    return json_response({"data": [device_json(r) for r in rows], "paging": {"total_count": total, "page": page,
                                                                             "per_page": limit}})


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
    _, p = await project_for(request)
    row = await store.device_row(request.app[POOL], p["id"], request.match_info["serial"])
    if row is None:
        raise NotFound(f"device {request.match_info['serial']} not found")
    return data(device_json(row))


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


def setup(app: web.Application) -> None:
    add_route(app, "GET", P + "/cohorts", list_cohorts)
    add_route(app, "POST", P + "/cohorts", create_cohort)
    add_route(app, "GET", P + "/cohorts/{cohort}", get_cohort)
    add_route(app, "GET", P + "/devices", list_devices)
    add_route(app, "POST", P + "/devices", create_device)
    add_route(app, "GET", P + "/devices/{serial}", get_device)
    add_route(app, "PATCH", P + "/devices/{serial}", patch_device)
