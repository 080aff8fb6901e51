"""Dashboard sessions and CSRF tokens.

A session is a row in `ui_sessions` named by a random cookie value (only its hash is stored),
tied to an org token or a user whose role is re-read on every request, so revoking a token or
changing a role takes effect at once. The cookie is HttpOnly, SameSite=Strict and Secure when the
public URL is https. Every POST carries the session's CSRF token; the login form, which has no
session yet, carries an HMAC (server secret) of a pre-login cookie instead.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

from gateway.appkeys import POOL, SETTINGS
from gateway.domain.access import Identity
from gateway.domain.errors import Forbidden
from gateway.http.client_ip import client_address
from gateway.services.auth import authenticate, token_ident, user_ident
from gateway.store import access as access_store
from gateway.store import db as db_store

COOKIE = "ota_session"
LOGIN_COOKIE = "ota_login"
SESSION_TTL = 12 * 3600
LOGIN_TTL = 3600


class LoginRequired(Exception):
    """No valid session: the page answers with a redirect to the login form."""


@dataclass(frozen=True, slots=True)
class Session:
    ident: Identity
    csrf: str


class _Secret:
    """The server-wide HMAC key for login-form tokens, read once from server_settings."""
    value: bytes | None = None


UI_SECRET = web.AppKey("ui_secret", _Secret)


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def _cookie_args(request: web.Request, max_age: int) -> dict:
    secure = request.config_dict[SETTINGS].effective_public_url.startswith("https://")
    return {"max_age": max_age, "path": "/ui/", "httponly": True, "samesite": "Strict", "secure": secure}


async def current(request: web.Request) -> Session:
    """The caller's live session, or LoginRequired."""
    sid = request.cookies.get(COOKIE)
    if not sid:
        raise LoginRequired()
    row = await access_store.ui_session(request.config_dict[POOL], _hash(sid))
    if row is None:
        raise LoginRequired()
    if row["token_id"] is not None:
        ident = token_ident({"id": row["token_id"], "name": row["token_name"], "role": row["token_role"],
                             "can_activate_protected": row["can_activate_protected"], "org_id": row["org_id"],
                             "org_slug": row["org_slug"]})
    else:
        ident = user_ident({"email": row["email"], "role": row["user_role"], "org_id": row["org_id"],
                            "org_slug": row["org_slug"]})
    return Session(ident, row["csrf"])


async def start(request: web.Request, resp: web.StreamResponse, email: str | None, secret: str) -> Identity:
    """Verify an org token (`email` None) or a user's email and secret exactly as the API does
    (401 otherwise; throttled and bounded alike, `services.login_guard`), create a session and
    set its cookie on `resp`."""
    pool = request.config_dict[POOL]
    ident = await authenticate(pool, email, secret, source=client_address(request))
    if email is None:
        token_id, user_id = (await access_store.token_identity(pool, secret))["id"], None
    else:
        token_id, user_id = None, (await access_store.user_identity(pool, email))["id"]
    sid = secrets.token_urlsafe(32)
    await access_store.create_ui_session(pool, _hash(sid), org_id=ident.org_id, token_id=token_id, user_id=user_id,
                                  csrf=secrets.token_urlsafe(32), ttl_seconds=SESSION_TTL)
    resp.set_cookie(COOKIE, sid, **_cookie_args(request, SESSION_TTL))
    resp.del_cookie(LOGIN_COOKIE, path="/ui/")
    return ident


async def end(request: web.Request, resp: web.StreamResponse) -> None:
    sid = request.cookies.get(COOKIE)
    if sid:
        await access_store.delete_ui_session(request.config_dict[POOL], _hash(sid))
    resp.del_cookie(COOKIE, path="/ui/")


def check_csrf(form, session: Session) -> None:
    if not hmac.compare_digest(str(form.get("_csrf", "")).encode(), session.csrf.encode()):
        raise Forbidden("the form's CSRF token is missing or invalid; reload the page and try again")


async def _secret(request: web.Request) -> bytes:
    holder = request.config_dict[UI_SECRET]
    if holder.value is None:
        async with request.config_dict[POOL].acquire() as conn:
            holder.value = bytes.fromhex(await db_store.server_secret(conn, "ui_login_key"))
    return holder.value


async def login_token(request: web.Request, resp_cookie: dict) -> str:
    """The login form's CSRF token, bound to a pre-login cookie (set through `resp_cookie`)."""
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    resp_cookie.update(name=LOGIN_COOKIE, value=nonce, **_cookie_args(request, LOGIN_TTL))
    return hmac.new(await _secret(request), b"login:" + nonce.encode(), "sha256").hexdigest()


async def check_login_csrf(request: web.Request, form) -> None:
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    expected = hmac.new(await _secret(request), b"login:" + nonce.encode(), "sha256").hexdigest()
    if not nonce or not hmac.compare_digest(str(form.get("_csrf", "")).encode(), expected.encode()):
        raise Forbidden("the login form's CSRF token is missing or invalid; reload the page and try again")
