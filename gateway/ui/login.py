"""Logging in to the dashboard (an org token, or a user's email and secret) and out."""
from __future__ import annotations

from aiohttp import web

from gateway.domain.errors import Unauthorized
from gateway.http.errors import status_of
from gateway.services.login_guard import LoginRefused
from gateway.ui import session
from gateway.ui.context import form_text
from gateway.ui.render import UI, error_page, redirect, render, safe_next


async def login_form(request: web.Request, *, status: int = 200, message: str = "", form=None):
    cookie: dict = {}
    token = await session.login_token(request, cookie)
    email = (form or {}).get("email", "")
    resp = render(request, "login.html", None, status=status, login_csrf=token, message=message,
                  next=_next(form or request.query), email=email if isinstance(email, str) else "")
    resp.set_cookie(cookie.pop("name"), cookie.pop("value"), **cookie)
    return resp


def _next(fields) -> str:
    """Where to go after logging in: a safe dashboard URL, else "" (a `next` that is not one, a
    CR/LF header injection say, is dropped: the login still goes to the dashboard's start)."""
    nxt = fields.get("next", "")
    return nxt if isinstance(nxt, str) and safe_next(nxt) else ""


async def login_page(request: web.Request):
    """GET /ui/login."""
    return await login_form(request)


async def login(request: web.Request):
    """POST /ui/login: an org token, or a user's email and secret."""
    form = await request.post()
    await session.check_login_csrf(request, form)
    email = form_text(form, "email", max_len=254).strip()
    secret = form_text(form, "secret", max_len=1024)
    if not secret:
        return await login_form(request, status=400, message="Enter an org token, or an email and its secret.",
                                form=form)
    resp = redirect(_next(form) or UI)
    try:
        await session.start(request, resp, email or None, secret)
    except LoginRefused as e:
        message = e.message[:1].upper() + e.message[1:] + "."
        return error_page(request, status_of(e), message, e.type, e.headers)
    except Unauthorized as e:
        return await login_form(request, status=401, message=e.message[:1].upper() + e.message[1:] + ".",
                                form=form)
    return resp


async def logout(request: web.Request):
    """POST /ui/logout."""
    sess = await session.current(request)
    session.check_csrf(await request.post(), sess)
    resp = redirect("/ui/login")
    await session.end(request, resp)
    return resp
