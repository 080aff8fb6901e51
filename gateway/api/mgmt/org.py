"""Organization administration: API tokens and users with viewer / editor / manager roles."""
from __future__ import annotations

from aiohttp import web

from gateway.appkeys import POOL
from gateway.http.errors import add_route
from gateway.domain.errors import BadRequest, Conflict, NotFound
from gateway.domain.access import ROLES
from gateway.api.mgmt.auth import identify
from gateway.domain.access import Identity
from gateway.api.mgmt.common import body_json, data
from gateway.domain.fields import iso, need_str
from gateway.crypto.tokens import hash_token, hash_user_secret, new_org_token
from gateway.store import access as access_store
from gateway.store import insight as insight_store

O = "/api/v0/organizations/{org}"


async def _manager(request: web.Request) -> Identity:
    ident = await identify(request)
    if request.match_info["org"] != ident.org_slug:
        raise NotFound(f"organization {request.match_info['org']!r} not found")
    ident.require("manager")
    return ident


def _role(body: dict) -> str:
    role = body.get("role", "editor")
    if role not in ROLES:
        raise BadRequest("role must be viewer, editor or manager")
    return role


async def list_tokens(request: web.Request) -> web.Response:
    ident = await _manager(request)
    rows = await access_store.list_tokens(request.app[POOL], ident.org_id)
    return data([{"id": r["id"], "name": r["name"], "role": r["role"],
                  "can_activate_protected": r["can_activate_protected"], "created_date": iso(r["created_at"]),
                  "revoked_date": iso(r["revoked_at"])} for r in rows])


async def create_token(request: web.Request) -> web.Response:
    """POST tokens {name, role, can_activate_protected}: the token is shown once, stored hashed."""
    ident = await _manager(request)
    body = await body_json(request, {"name": None, "role": None, "can_activate_protected": None})
    name = need_str(body, "name", charset=None)
    role = _role(body)
    flag = body.get("can_activate_protected", False)
    if not isinstance(flag, bool):
        raise BadRequest("can_activate_protected must be a boolean")
    token = new_org_token()
    async with request.app[POOL].acquire() as conn, conn.transaction():
        tid = await access_store.create_token(conn, ident.org_id, name, hash_token(token), role, flag)
        await insight_store.audit(conn, None, ident.actor, "token.create", f"token:{tid}", None,
                          {"name": name, "role": role, "can_activate_protected": flag})
    return data({"id": tid, "name": name, "role": role, "can_activate_protected": flag, "token": token}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    ident = await _manager(request)
    await body_json(request, {})
    try:
        tid = int(request.match_info["id"])
    except ValueError:
        raise NotFound("token not found") from None
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if not await access_store.revoke_token(conn, ident.org_id, tid):
            raise NotFound(f"token {tid} not found or already revoked")
        await insight_store.audit(conn, None, ident.actor, "token.revoke", f"token:{tid}", None, None)
    return web.Response(status=204)


async def list_users(request: web.Request) -> web.Response:
    ident = await _manager(request)
    rows = await access_store.list_users(request.app[POOL], ident.org_id)
    return data([{"id": r["id"], "email": r["email"], "role": r["role"], "created_date": iso(r["created_at"])}
                 for r in rows])


async def create_user(request: web.Request) -> web.Response:
    """POST users {email, role, secret?}: without a secret one is generated and shown once."""
    ident = await _manager(request)
    body = await body_json(request, {"email": None, "role": None, "secret": None})
    email = need_str(body, "email", charset=None, max_len=254)
    if "@" not in email:
        raise BadRequest("email must be an email address")
    role = _role(body)
    secret = body.get("secret") or new_org_token()[4:]
    if not isinstance(secret, str) or len(secret) < 12:
        raise BadRequest("secret must be a string of at least 12 characters")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        uid = await access_store.create_user(conn, ident.org_id, email, hash_user_secret(secret), role)
        if uid is None:
            raise Conflict(f"user {email} already exists")
        await insight_store.audit(conn, None, ident.actor, "user.create", f"user:{email}", None, {"role": role})
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
