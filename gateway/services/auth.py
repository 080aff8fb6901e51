"""Who is calling: an org token, or a user's email and secret (shared by the API and the dashboard)."""
from __future__ import annotations

import asyncio
import hashlib
import time

from gateway.domain.access import Identity
from gateway.domain.errors import Unauthorized
from gateway.services import login_guard
from gateway.store import access as access_store

_USER_CACHE_TTL = 60.0
_USER_CACHE_MAX = 4096  # successful logins only; expired entries are dropped when it is full


_user_cache: dict[tuple[str, str], tuple[float, "Identity"]] = {}
_checking: dict[tuple[str, str], asyncio.Task] = {}  # email logins being checked, by (email, sha256(secret))


def token_ident(row) -> Identity:
    return Identity(actor=f"token:{row['name'] or row['id']}", org_id=row["org_id"], org_slug=row["org_slug"],
                    role=row["role"], can_activate_protected=row["can_activate_protected"])


def user_ident(row) -> Identity:
    return Identity(actor=f"user:{row['email']}", org_id=row["org_id"], org_slug=row["org_slug"], role=row["role"],
                    can_activate_protected=row["role"] == "manager")


async def authenticate(pool, user: str | None, secret: str, source: str | None = None) -> Identity:
    """An org token (`user` None) or a user's email and secret; 401 when invalid. Shared by the
    API's Authorization header and the dashboard's login form. An email login goes through
    `login_guard.GUARD` (per process): throttled per email and per `source` address (429,
    LoginThrottled, before any hashing), scrypt in a bounded thread pool (503, LoginBusy, when
    it is full), an unknown email hashed against a dummy so that it takes the same work."""
    if user is None:
        row = await access_store.token_identity(pool, secret)
        if row is None:
            raise Unauthorized("token is invalid or revoked")
        return token_ident(row)
    ck = (user, hashlib.sha256(secret.encode()).hexdigest())
    task = _checking.get(ck)
    if task is None or task.get_loop() is not asyncio.get_running_loop():
        # the same email and secret arriving together (a script's parallel requests once the
        # cache entry expires) share one check: one scrypt, one pool slot, one throttle token
        task = _checking[ck] = asyncio.ensure_future(_check_user(pool, user, secret, source, ck))
        task.add_done_callback(lambda t: _checked(ck, t))
    return await asyncio.shield(task)  # a caller that goes away leaves the check to the others


def _checked(ck: tuple[str, str], task: asyncio.Task) -> None:
    if _checking.get(ck) is task:
        del _checking[ck]
    if not task.cancelled():
        task.exception()  # retrieved, even when every caller has gone


async def _check_user(pool, user: str, secret: str, source: str | None, ck: tuple[str, str]) -> Identity:
    guard = login_guard.GUARD
    with guard.attempt(user, source) as attempt:  # a throttled caller gets no further, not even the cache
        # scrypt is deliberately slow: remember a successful check for a minute
        hit = _user_cache.get(ck)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        row = await access_store.user_identity(pool, user)
        if not await guard.verify(secret, row["secret_hash"] if row is not None else None):
            attempt.failed = True
            raise Unauthorized("email or secret is invalid")
    ident = user_ident(row)
    _remember(ck, ident)
    return ident


def _remember(ck: tuple[str, str], ident: Identity) -> None:
    now = time.monotonic()
    if len(_user_cache) >= _USER_CACHE_MAX:
        for k in [k for k, (until, _) in _user_cache.items() if until <= now]:
            del _user_cache[k]
        if len(_user_cache) >= _USER_CACHE_MAX:
            _user_cache.clear()
    _user_cache[ck] = (now + _USER_CACHE_TTL, ident)
