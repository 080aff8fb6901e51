"""Management API for DDI devices: target tokens, action history, retrying a failed release,
per-release action counts, and the DDI part of "inspect device"."""
from __future__ import annotations

import secrets

from aiohttp import web

from . import ddi, ddi_store, store
from .appkeys import POOL
from .ddi_state import DDI_CACHE
from .errors import BadRequest, Conflict, NotFound, add_route
from .manage_auth import project_for
from .manage_common import P, body_json, data, iso
from .manage_insight import INSPECTORS
from .mirror import ProjectView
from .tokens import hash_token

D = P + "/devices/{serial}/ddi"


async def _changed(request: web.Request, conn, project_id: int, serial: str) -> None:
    """Inside the write's transaction: tell every process to drop the device's cached DDI state."""
    cache = request.app[DDI_CACHE]
    await store.notify(conn, cache.message(project_id, serial))


async def _device(conn, project_id: int, serial: str):
    row = await ddi_store.device_ddi_row(conn, project_id, serial)
    if row is None:
        raise NotFound(f"device {serial} not found")
    return row


async def set_token(request: web.Request) -> web.Response:
    """POST D/token [{"token"}]: set or rotate the device's TargetToken; shown only in this answer."""
    ident, p = await project_for(request)
    serial = request.match_info["serial"]
    body = await body_json(request)
    token = body.get("token")
    if token is None:
        token = secrets.token_hex(16)
    elif not isinstance(token, str) or not 16 <= len(token) <= 128 or not token.isascii() or " " in token:
        raise BadRequest("token must be 16-128 ASCII characters without spaces")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if not await ddi_store.set_token(conn, p["id"], serial, hash_token(token)):
            raise NotFound(f"device {serial} not found")
        await store.audit(conn, p["id"], ident.actor, "device.ddi_token", f"device:{serial}", None, {"set": True})
        await _changed(request, conn, p["id"], serial)
    request.app[DDI_CACHE].invalidate((p["id"], serial))
    return data({"device_serial": serial, "target_token": token})


async def delete_token(request: web.Request) -> web.Response:
    """DELETE D/token: the device can then only authenticate with a GatewayToken."""
    ident, p = await project_for(request)
    serial = request.match_info["serial"]
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if not await ddi_store.set_token(conn, p["id"], serial, None):
            raise NotFound(f"device {serial} not found")
        await store.audit(conn, p["id"], ident.actor, "device.ddi_token", f"device:{serial}", None, {"set": False})
        await _changed(request, conn, p["id"], serial)
    request.app[DDI_CACHE].invalidate((p["id"], serial))
    return web.Response(status=204)


def action_json(a) -> dict:
    return {"id": a["id"], "status": a["status"], "hawkbit_status": ddi.HAWKBIT_STATUS[a["status"]],
            "release_id": a["release_id"], "software_type": a["software_type"], "version": a["version"],
            "delta_from": a["from_version"], "reason": a["reason"], "cancel_rejected": a["cancel_rejected"],
            "created_date": iso(a["created_at"]), "retrieved_date": iso(a["retrieved_at"]),
            "closed_date": iso(a["closed_at"]), "retried_date": iso(a["retried_at"]), "retried_by": a["retried_by"],
            "feedback": a["feedback"]}


async def device_ddi(request: web.Request) -> web.Response:
    """GET D: the device's DDI attributes and whether it has a target token."""
    _, p = await project_for(request)
    dev = await _device(request.app[POOL], p["id"], request.match_info["serial"])
    return data({"device_serial": dev["serial"], "hardware_version": dev["hardware_version"],
                 "software_type": dev["ddi_software_type"], "attributes": dev["ddi_attributes"] or {},
                 "config_requested": dev["ddi_config_requested"], "target_token_set": dev["has_token"]})


async def device_actions(request: web.Request) -> web.Response:
    """GET D/actions: the device's actions, newest first, each with its feedback history."""
    _, p = await project_for(request)
    pool = request.app[POOL]
    dev = await _device(pool, p["id"], request.match_info["serial"])
    return data([action_json(a) for a in await ddi_store.list_actions(pool, dev["id"])])


async def retry_action(request: web.Request) -> web.Response:
    """POST D/actions/{action_id}/retry: offer a release that failed on this device again."""
    ident, p = await project_for(request)
    serial = request.match_info["serial"]
    raw = request.match_info["action_id"]
    if not raw.isdigit():
        raise BadRequest("action_id must be an integer")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await ddi_store.device_action(conn, p["id"], serial, int(raw), lock=True)
        if row is None:
            raise NotFound(f"action {raw} of device {serial} not found")
        if row["status"] != "failed" or row["release_id"] is None:
            raise Conflict(f"action {raw} is {row['status']}; only a failed action can be retried")
        cleared = await ddi_store.retry_failed(conn, row["device_id"], row["release_id"], ident.actor)
        if not cleared:
            raise Conflict(f"release {row['version']} was already retried on device {serial}")
        await store.audit(conn, p["id"], ident.actor, "device.ddi_retry", f"device:{serial}",
                          {"action_id": row["id"]}, {"release_id": row["release_id"]})
        await _changed(request, conn, p["id"], serial)
    request.app[DDI_CACHE].invalidate((p["id"], serial))
    return data({"device_serial": serial, "action_id": row["id"], "release_id": row["release_id"],
                 "version": row["version"], "cleared_failures": cleared})


async def release_stats(request: web.Request) -> web.Response:
    """GET P/ddi/releases: DDI actions per release and status, e.g. failures per release."""
    _, p = await project_for(request)
    out: dict = {}
    for r in await ddi_store.release_stats(request.app[POOL], p["id"]):
        entry = out.setdefault(r["release_id"], {
            "release_id": r["release_id"], "software_type": r["software_type"], "version": r["version"],
            "delta_from": r["from_version"],
            "actions": {s: 0 for s in ("open", "canceling", "succeeded", "failed", "canceled")}})
        entry["actions"][r["status"]] += r["n"]
    return data(list(out.values()))


async def inspect_ddi(request: web.Request, view: ProjectView, serial: str, software_type: str, _entry) -> dict:
    """The DDI answer for "inspect device", computed like a poll but without writing anything."""
    state = await ddi.device_state(request.app, view.id, serial)
    hw, sw = ddi.effective_identity(view, state)
    if sw != software_type:
        return {"ddi": {"software_type": sw, "applies": False}}
    what, action, detail = ddi.plan(ddi.Caller(view, serial, None, state))
    reason = detail if what in ("deploymentBase", "cancelAction", "cancel") else \
        detail[2] if what == "create" else what
    return {"ddi": {"software_type": sw, "hardware_version": hw, "applies": True, "next": what, "reason": reason,
                    "action_id": action.id if action else None,
                    "blocked_release_ids": sorted(state.blocked)}}


def setup(app: web.Application) -> None:
    app.setdefault(INSPECTORS, []).append(inspect_ddi)
    add_route(app, "GET", D, device_ddi)
    add_route(app, "POST", D + "/token", set_token)
    add_route(app, "DELETE", D + "/token", delete_token)
    add_route(app, "GET", D + "/actions", device_actions)
    add_route(app, "POST", D + "/actions/{action_id}/retry", retry_action)
    add_route(app, "GET", P + "/ddi/releases", release_stats)
