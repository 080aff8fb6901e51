"""DDI devices: authentication (GatewayToken, TargetToken), the per-device state, and the durable writes a device request makes."""
from __future__ import annotations

import hmac

from aiohttp import web

from gateway.appkeys import DEVICE, POOL, RESOURCES
from gateway.crypto.tokens import hash_token
from gateway.domain.ddi_actions import Caller
from gateway.domain.errors import BadRequest
from gateway.http.client_ip import client_address
from gateway.http.errors import error_response
from gateway.memory.auth_guard import AUTH_FAILURES
from gateway.memory.ddi_cache import DDI_CACHE
from gateway.memory.ddi_loader import device_state, known_token, lookup_token
from gateway.memory.mirror import SERIAL_RE_TEXT as SERIAL_RE
from gateway.store import db as db_store

MEMFAULT_ROOT = "/api/v0/hawkbit"


BASE = "/{tenant}/controller/v1/{controllerId}"


HARDWARE_KEYS = ("memfault__hardware_version", "hardware_version")


SOFTWARE_TYPE_KEYS = ("memfault__software_type", "software_type")


VERSION_KEYS = ("memfault__current_version", "current_version", "sw_version")


def gateway_key(mirror, header: str):
    """(project view, cohort override) of a `GatewayToken` Authorization header, from memory; None
    for an unknown key, or when its project refuses the project key as a GatewayToken
    (`ddi_gateway_token` off)."""
    if not header.startswith("GatewayToken "):
        return None
    info = mirror.key_info(header[13:].strip())
    project = mirror.projects.get(info.project_id) if info is not None else None
    if project is None or not project.ddi_gateway_token:
        return None
    return project, info.cohort_override


async def authenticate(request: web.Request) -> Caller | web.Response:
    """The calling device, or the answer refusing it: hawkBit's bare 401, or 429 with Retry-After
    to a source past its limit of failed authentications (memory/auth_guard)."""
    caller = await _identify(request)
    return caller if caller is not None else refusal(request)


def refusal(request: web.Request) -> web.Response:
    """The answer to a failed authentication, counted against its source."""
    retry = request.app[AUTH_FAILURES].failed(client_address(request))
    if retry is None:
        return web.Response(status=401)
    return error_response(429, "too many failed authentications from this address", "rate_limited",
                          {"Retry-After": str(retry)})


async def _identify(request: web.Request) -> Caller | None:
    """The calling device, or None when the Authorization header does not authenticate it. Only
    an authenticated device's state is loaded (and cached)."""
    header = request.headers.get("Authorization", "")
    mirror = request.app[DEVICE].mirror
    token_hash = None
    if not header.isascii():  # tokens are ASCII; other bytes would not even hash
        return None
    if header.startswith("GatewayToken "):
        key = gateway_key(mirror, header)
        if key is None:
            return None
        project, override = key
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
    res = request.app[RESOURCES]
    if token_hash is not None and not await _target_token(request, res, project, serial, token_hash):
        return None
    state = await device_state(res, project, serial)
    if token_hash is not None and not (state.token_hash and hmac.compare_digest(state.token_hash, token_hash)):
        return None  # the token changed while the state loaded
    return Caller(project, serial, override, state)


async def _target_token(request: web.Request, res, project, serial: str, token_hash: str) -> bool:
    """Whether a TargetToken authenticates the device: from memory when memory can tell, else (but
    not for a source past its failure limit) by one batched index probe, before any state."""
    known = known_token(res, project, serial, token_hash)
    if known is not None:
        return known
    if request.app[AUTH_FAILURES].retry_after(client_address(request)) is not None:
        return False
    return await lookup_token(res, project, serial, token_hash)


def device_route(handler):
    """Authenticate first; hawkBit answers a failed authentication with a bare 401."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        caller = await authenticate(request)
        if not isinstance(caller, Caller):
            return caller
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
