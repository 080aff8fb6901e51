"""Management API authentication: Bearer token, Basic `:token`, Basic `email:secret`."""
from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass

from aiohttp import web

from . import store
from .appkeys import POOL
from .domain.access import role_at_least
from .errors import Forbidden, NotFound, Unauthorized
from .tokens import verify_user_secret

_USER_CACHE_TTL = 60.0
_user_cache: dict[tuple[str, str], tuple[float, "Identity"]] = {}


@dataclass(frozen=True, slots=True)
class Identity:
    actor: str            # what the audit log shows: token name or user email (never a secret)
    org_id: int
    org_slug: str
    role: str
    can_activate_protected: bool

    def require(self, role: str) -> None:
        if not role_at_least(self.role, role):
            raise Forbidden(f"this action needs the {role} role; you are {self.role}")


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
    return await authenticate(request.app[POOL], user, secret)


def token_ident(row) -> Identity:
    return Identity(actor=f"token:{row['name'] or row['id']}", org_id=row["org_id"], org_slug=row["org_slug"],
                    role=row["role"], can_activate_protected=row["can_activate_protected"])


def user_ident(row) -> Identity:
    return Identity(actor=f"user:{row['email']}", org_id=row["org_id"], org_slug=row["org_slug"], role=row["role"],
                    can_activate_protected=row["role"] == "manager")


async def authenticate(pool, user: str | None, secret: str) -> Identity:
    """An org token (`user` None) or a user's email and secret; 401 when invalid. Shared by the
    API's Authorization header and the dashboard's login form."""
    if user is None:
        row = await store.token_identity(pool, secret)
        if row is None:
            raise Unauthorized("token is invalid or revoked")
        return token_ident(row)
    # scrypt is deliberately slow: remember a successful check for a minute
    ck = (user, hashlib.sha256(secret.encode()).hexdigest())
    hit = _user_cache.get(ck)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    row = await store.user_identity(pool, user)
    if row is None or not verify_user_secret(secret, row["secret_hash"]):
        raise Unauthorized("email or secret is invalid")
    ident = user_ident(row)
    _user_cache[ck] = (time.monotonic() + _USER_CACHE_TTL, ident)
    return ident


async def project_for(request: web.Request) -> tuple[Identity, dict]:
    """Identity plus the project named in the path, which must belong to the caller's org."""
    ident = await identify(request)
    org, slug = request.match_info["org"], request.match_info["project"]
    if org != ident.org_slug:
        raise NotFound(f"organization {org!r} not found")
    project = await store.project_by_slugs(request.app[POOL], org, slug)
    if project is None:
        raise NotFound(f"project {slug!r} not found")
    if request.method not in ("GET", "HEAD"):
        ident.require("editor")
    return ident, dict(project)


async def context_for(request: web.Request):
    """project_for as a service-layer Context."""
    from .services import Context  # local: services imports Identity from here

    ident, project = await project_for(request)
    return Context(request.app, ident, project)
