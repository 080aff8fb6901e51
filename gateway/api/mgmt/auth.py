"""Management API authentication: Bearer token, Basic `:token`, Basic `email:secret`."""
from __future__ import annotations

import base64
import binascii

from aiohttp import web

from gateway.appkeys import POOL, RESOURCES
from gateway.domain.access import Identity
from gateway.domain.errors import Unauthorized
from gateway.http.client_ip import client_address
from gateway.services import Context, project_context
from gateway.services.auth import authenticate


def _credentials(header: str) -> tuple[str | None, str]:
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        return None, value
    if scheme == "basic" and value:
        try:
            user, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("Authorization header is malformed") from None
        return (user or None), secret
    raise Unauthorized("Authorization must be 'Bearer <token>' or HTTP Basic")


async def identify(request: web.Request) -> Identity:
    """Who is calling; 401 when nobody valid is."""
    header = request.headers.get("Authorization")
    if not header:
        raise Unauthorized("Authorization header is required", headers={"WWW-Authenticate": 'Basic realm="ota-gateway"'})
    user, secret = _credentials(header)
    # a login refused unchecked (LoginThrottled, LoginBusy) is a domain error with its status
    # (429, 503) and Retry-After in http.errors.STATUS
    return await authenticate(request.app[POOL], user, secret, source=client_address(request))


async def context_for(request: web.Request) -> Context:
    """The caller and the project named in the path (which must belong to the caller's
    organization) as a service-layer Context; writes need the editor role at least."""
    ident = await identify(request)
    ctx = await project_context(request.app[RESOURCES], ident, request.match_info["org"],
                                request.match_info["project"])
    if request.method not in ("GET", "HEAD"):
        ident.require("editor")
    return ctx
