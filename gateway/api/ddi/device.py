"""DDI devices: authentication (GatewayToken, TargetToken), the per-device state, and the durable writes a device request makes."""
from __future__ import annotations

import hmac

from aiohttp import web

from gateway.appkeys import DEVICE, POOL, RESOURCES
from gateway.crypto.tokens import hash_token
from gateway.domain.ddi_actions import Caller
from gateway.domain.errors import BadRequest
from gateway.memory.ddi_cache import DDI_CACHE
from gateway.memory.ddi_loader import device_state
from gateway.memory.mirror import SERIAL_RE_TEXT as SERIAL_RE
from gateway.store import db as db_store

MEMFAULT_ROOT = "/api/v0/hawkbit"


BASE = "/{tenant}/controller/v1/{controllerId}"


HARDWARE_KEYS = ("memfault__hardware_version", "hardware_version")


SOFTWARE_TYPE_KEYS = ("memfault__software_type", "software_type")


VERSION_KEYS = ("memfault__current_version", "current_version", "sw_version")


def gateway_key(mirror, header: str):
    """The project key of a `GatewayToken` Authorization header (from memory), or None."""
    return mirror.key_info(header[13:].strip()) if header.startswith("GatewayToken ") else None


async def authenticate(request: web.Request) -> Caller | None:
    """The calling device, or None when the Authorization header does not authenticate it."""
    header = request.headers.get("Authorization", "")
    mirror = request.app[DEVICE].mirror
    token_hash = None
    if not header.isascii():  # tokens are ASCII; other bytes would not even hash
        return None
    if header.startswith("GatewayToken "):
        info = gateway_key(mirror, header)
        if info is None:
            return None
        project, override = mirror.projects.get(info.project_id), info.cohort_override
    elif header.startswith("TargetToken "):
        token_hash = hash_token(header[12:].strip())
        project, override = mirror.by_slug.get(request.match_info["tenant"]), None
    else:
        return None
    if project is None:
        return None
    serial = request.match_info["controllerId"]
    if not SERIAL_RE.match(serial):
        raise BadRequest("controllerId must match ^[-a-zA-Z0-9_]+$ (at most 128 characters)")
    state = await device_state(request.app[RESOURCES], project, serial)
    if token_hash is not None and not (state.token_hash and hmac.compare_digest(state.token_hash, token_hash)):
        return None
    return Caller(project, serial, override, state)


def device_route(handler):
    """Authenticate first; hawkBit answers a failed authentication with a bare 401."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        caller = await authenticate(request)
        if caller is None:
            return web.Response(status=401)
        return await handler(request, caller)

    wrapped.__name__, wrapped.__doc__ = handler.__name__, handler.__doc__
    return wrapped


async def durable(request: web.Request, caller: Caller, tx, *, notify: bool = True):
    """Run `tx(conn)` in a transaction, then drop the cached state here and (by NOTIFY) elsewhere."""
    cache = request.app[DDI_CACHE]
    async with request.app[POOL].acquire() as conn, conn.transaction():
        result = await tx(conn)
        if notify:
            await db_store.notify(conn, cache.message(*caller.key))
    cache.invalidate(caller.key)
    return result
