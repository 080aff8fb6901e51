"""Organization administration: API tokens and users with viewer / editor / manager roles."""
from __future__ import annotations

from aiohttp import web

from gateway.api.mgmt.auth import identify
from gateway.api.mgmt.common import body_json, data
from gateway.appkeys import RESOURCES
from gateway.crypto.tokens import new_org_token
from gateway.domain.access import ROLES
from gateway.domain.errors import BadRequest, NotFound
from gateway.domain.fields import need_str, parse_id
from gateway.http.errors import add_route
from gateway.services import Context, org

O = "/api/v0/organizations/{org}"


async def _manager(request: web.Request) -> Context:
    """The caller as an organization-level Context: the org in the path must be theirs, and
    these routes need the manager role."""
    ident = await identify(request)
    if request.match_info["org"] != ident.org_slug:
        raise NotFound(f"organization {request.match_info['org']!r} not found")
    return org.org_context(request.app[RESOURCES], ident)


def _role(body: dict) -> str:
    role = body.get("role", "editor")
    if not isinstance(role, str) or role not in ROLES:  # a list or an object is not hashable
        raise BadRequest("role must be viewer, editor or manager")
    return role


async def list_tokens(request: web.Request) -> web.Response:
    return data(await org.list_tokens(await _manager(request)))


async def create_token(request: web.Request) -> web.Response:
    """POST tokens {name, role, can_activate_protected}: the token is shown once, stored hashed."""
    ctx = await _manager(request)
    body = await body_json(request, {"name": None, "role": None, "can_activate_protected": None})
    name = need_str(body, "name", charset=None)
    role = _role(body)
    flag = body.get("can_activate_protected", False)
    if not isinstance(flag, bool):
        raise BadRequest("can_activate_protected must be a boolean")
    return data(await org.create_token(ctx, name, role, flag, new_org_token()), status=201)


async def revoke_token(request: web.Request) -> web.Response:
    ctx = await _manager(request)
    await body_json(request, {})
    await org.revoke_token(ctx, parse_id(request.match_info["id"], "token"))
    return web.Response(status=204)


async def list_users(request: web.Request) -> web.Response:
    return data(await org.list_users(await _manager(request)))


async def create_user(request: web.Request) -> web.Response:
    """POST users {email, role, secret?}: without a secret one is generated and shown once."""
    ctx = await _manager(request)
    body = await body_json(request, {"email": None, "role": None, "secret": None})
    email = need_str(body, "email", charset=None, max_len=254)
    if "@" not in email:
        raise BadRequest("email must be an email address")
    role = _role(body)
    secret = body.get("secret") or new_org_token()[4:]
    if not isinstance(secret, str) or len(secret) < 12:
        raise BadRequest("secret must be a string of at least 12 characters")
    uid = await org.create_user(ctx, email, role, secret)
    out = {"id": uid, "email": email, "role": role}
    if not body.get("secret"):
        out["secret"] = secret
    return data(out, status=201)


def setup(app: web.Application) -> None:
    add_route(app, "GET", O + "/tokens", list_tokens)
    add_route(app, "POST", O + "/tokens", create_token)
    add_route(app, "DELETE", O + "/tokens/{id}", revoke_token)
    add_route(app, "GET", O + "/users", list_users)
    add_route(app, "POST", O + "/users", create_user)
