"""Management API for DDI devices: target tokens, action history, retrying a failed release,
per-release action counts; reads, retries and the DDI part of "inspect device" live in
services.ddi."""
from __future__ import annotations

import secrets

from aiohttp import web

from gateway.api.mgmt.auth import context_for
from gateway.api.mgmt.common import P, body_json, data
from gateway.crypto.tokens import hash_token
from gateway.domain.errors import BadRequest
from gateway.domain.fields import parse_id
from gateway.http.errors import add_route
from gateway.services import ddi as ddi_svc

D = P + "/devices/{serial}/ddi"


async def set_token(request: web.Request) -> web.Response:
    """POST D/token [{"token"}]: set or rotate the device's TargetToken; shown only in this answer."""
    ctx = await context_for(request)
    serial = request.match_info["serial"]
    body = await body_json(request, {"token": None})
    token = body.get("token")
    if token is None:
        token = secrets.token_hex(16)
    elif not isinstance(token, str) or not 16 <= len(token) <= 128 or not token.isascii() or " " in token:
        raise BadRequest("token must be 16-128 ASCII characters without spaces")
    await ddi_svc.set_token(ctx, serial, hash_token(token))
    return data({"device_serial": serial, "target_token": token})


async def delete_token(request: web.Request) -> web.Response:
    """DELETE D/token: the device can then only authenticate with a GatewayToken."""
    ctx = await context_for(request)
    await body_json(request, {})
    await ddi_svc.set_token(ctx, request.match_info["serial"], None)
    return web.Response(status=204)


async def device_ddi(request: web.Request) -> web.Response:
    """GET D: the device's DDI attributes and whether it has a target token."""
    return data(await ddi_svc.device_ddi(await context_for(request), request.match_info["serial"]))


async def device_actions(request: web.Request) -> web.Response:
    """GET D/actions: the device's actions, newest first, each with its feedback history."""
    return data(await ddi_svc.device_actions(await context_for(request), request.match_info["serial"]))


async def retry_action(request: web.Request) -> web.Response:
    """POST D/actions/{action_id}/retry: offer a release that failed on this device again."""
    ctx = await context_for(request)
    await body_json(request, {})
    action_id = parse_id(request.match_info["action_id"], "action_id")
    change = await ddi_svc.retry_action(ctx, request.match_info["serial"], action_id)
    return data(change.data, status=202 if change.pending else 200)


async def release_stats(request: web.Request) -> web.Response:
    """GET P/ddi/releases: DDI actions per release and status, e.g. failures per release."""
    return data(await ddi_svc.release_stats(await context_for(request)))


def setup(app: web.Application) -> None:
    add_route(app, "GET", D, device_ddi)
    add_route(app, "POST", D + "/token", set_token)
    add_route(app, "DELETE", D + "/token", delete_token)
    add_route(app, "GET", D + "/actions", device_actions)
    add_route(app, "POST", D + "/actions/{action_id}/retry", retry_action)
    add_route(app, "GET", P + "/ddi/releases", release_stats)
