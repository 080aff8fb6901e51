"""Who is calling: an org token, or a user's email and secret (shared by the API and the dashboard)."""
from __future__ import annotations

import hashlib
import time

from gateway.crypto.tokens import verify_user_secret
from gateway.domain.access import Identity
from gateway.domain.errors import Unauthorized
from gateway.store import access as access_store

_USER_CACHE_TTL = 60.0


_user_cache: dict[tuple[str, str], tuple[float, "Identity"]] = {}


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
        row = await access_store.token_identity(pool, secret)
        if row is None:
            raise Unauthorized("token is invalid or revoked")
        return token_ident(row)
    # scrypt is deliberately slow: remember a successful check for a minute
    ck = (user, hashlib.sha256(secret.encode()).hexdigest())
    hit = _user_cache.get(ck)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    row = await access_store.user_identity(pool, user)
    if row is None or not verify_user_secret(secret, row["secret_hash"]):
        raise Unauthorized("email or secret is invalid")
    ident = user_ident(row)
    _user_cache[ck] = (time.monotonic() + _USER_CACHE_TTL, ident)
    return ident
