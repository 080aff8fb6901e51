"""What a DDI device reports: feedback on actions (written synchronously) and configData."""
from __future__ import annotations

from aiohttp import web

from gateway.api.ddi.device import (
    HARDWARE_KEYS,
    SOFTWARE_TYPE_KEYS,
    VERSION_KEYS,
    device_route,
    durable,
)
from gateway.api.ddi.render import action_id_of
from gateway.appkeys import POOL
from gateway.domain.ddi_actions import (
    Caller,
    effective_identity,
    parse_feedback,
    transition,
)
from gateway.domain.errors import BadRequest, Gone, NotAllowed, NotFound
from gateway.http.jsonbody import parse_json
from gateway.store import ddi as ddi_store


def lenient_json(raw: bytes):
    """Parse a device's JSON; SWUpdate builds bodies with printf and may put raw newlines in strings
    (the one body reader, `http.jsonbody`, bounds nesting and names out-of-range numbers)."""
    return parse_json(raw, lenient=True)


async def _feedback(request: web.Request, caller: Caller, kind: str) -> web.Response:
    action_id = action_id_of(request)
    fb = parse_feedback(lenient_json(await request.read()))
    new_status, rejected = transition(kind, fb)

    async def tx(conn):
        row = await ddi_store.device_action(conn, caller.project.id, caller.serial, action_id, lock=True)
        if row is None:
            raise NotFound(f"actionId {action_id} is not an action of device {caller.serial}")
        if row["status"] not in ddi_store.OPEN:
            raise Gone(f"actionId {action_id} is already closed ({row['status']})")
        if kind == "cancel" and row["status"] != "canceling":
            raise NotAllowed(f"actionId {action_id} is not being canceled", type="not_cancelable")
        await ddi_store.add_feedback(conn, action_id, kind=kind, execution=fb.execution, finished=fb.finished,
                                     code=fb.code, progress=fb.progress, details=fb.details)
        if new_status is not None:
            await ddi_store.set_action_status(conn, action_id, new_status, cancel_rejected=rejected)
            if new_status == "succeeded":
                await ddi_store.record_version(conn, row["device_id"], row["software_type"], row["version"])
                await ddi_store.request_config(conn, row["device_id"])

    if new_status is None:  # progress only: durable, but nothing a poll would answer differently
        async with request.app[POOL].acquire() as conn, conn.transaction():
            await tx(conn)
    else:
        await durable(request, caller, tx)
    return web.Response(status=200)


@device_route
async def deployment_feedback(request: web.Request, caller: Caller) -> web.Response:
    """POST {base}/deploymentBase/{actionId}/feedback: progress or result; 200 with an empty body."""
    return await _feedback(request, caller, "deployment")


@device_route
async def cancel_feedback(request: web.Request, caller: Caller) -> web.Response:
    """POST {base}/cancelAction/{actionId}/feedback: the device's answer to a cancel."""
    return await _feedback(request, caller, "cancel")


def _first(data: dict[str, str], keys: tuple[str, ...]) -> str | None:
    return next((data[k] for k in keys if data.get(k)), None)


@device_route
async def config_data(request: web.Request, caller: Caller) -> web.Response:
    """PUT {base}/configData: device attributes; the memfault__* ones (and aliases) set the
    hardware version (once), software type and current version. 200 with an empty body."""
    body = lenient_json(await request.read())
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    data = body.get("data")
    if not isinstance(data, dict) or not data:
        raise BadRequest("data is required: a non-empty object of string attributes")
    for k, v in data.items():
        if not isinstance(v, str) or len(k) > 128 or len(v) > 128 or "\x00" in k or "\x00" in v:
            raise BadRequest(f"data.{k[:64]} must be a string of at most 128 characters (key too)")
    mode = body.get("mode") or "merge"
    if mode not in ("merge", "replace", "remove"):
        raise BadRequest("mode must be merge, replace or remove")
    reported = mode != "remove"
    hw = _first(data, HARDWARE_KEYS) if reported else None
    sw = _first(data, SOFTWARE_TYPE_KEYS) if reported else None
    current = _first(data, VERSION_KEYS) if reported else None
    software_type = sw or effective_identity(caller.project, caller.state)[1]

    async def tx(conn):
        device_id = caller.state.device_id or await ddi_store.ensure_device(conn, caller.project.id,
                                                                            caller.serial, None)
        await ddi_store.save_config(conn, device_id, mode=mode, data=data, hardware_version=hw, software_type=sw)
        if current and software_type:
            await ddi_store.record_version(conn, device_id, software_type, current)
    await durable(request, caller, tx)
    return web.Response(status=200)
