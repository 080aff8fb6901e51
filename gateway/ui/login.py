"""Logging in to the dashboard (an org token, or a user's email and secret) and out."""
from __future__ import annotations

from aiohttp import web

from gateway.domain.errors import Unauthorized
from gateway.services.login_guard import LoginBusy, LoginRefused, LoginThrottled
from gateway.ui import session
from gateway.ui.render import UI, error_page, redirect, render, safe_next

# a login refused unchecked: the HTML error page with its status and Retry-After
_REFUSED = {LoginThrottled: 429, LoginBusy: 503}


async def login_form(request: web.Request, *, status: int = 200, message: str = "", form=None):
    cookie: dict = {}
    token = await session.login_token(request, cookie)
    nxt = (form or request.query).get("next", "")
    resp = render(request, "login.html", None, status=status, login_csrf=token, message=message,
                  next=nxt if safe_next(nxt) else "", email=(form or {}).get("email", ""))
    resp.set_cookie(cookie.pop("name"), cookie.pop("value"), **cookie)
    return resp


async def login_page(request: web.Request):
    """GET /ui/login."""
    return await login_form(request)


async def login(request: web.Request):
    """POST /ui/login: an org token, or a user's email and secret."""
    form = await request.post()
    await session.check_login_csrf(request, form)
    email = str(form.get("email", "")).strip()
    secret = str(form.get("secret", ""))
    if not secret:
        return await login_form(request, status=400, message="Enter an org token, or an email and its secret.",
                                form=form)
    nxt = str(form.get("next", ""))
    resp = redirect(nxt if safe_next(nxt) else UI)
    try:
        await session.start(request, resp, email or None, secret)
    except LoginRefused as e:
        message = e.message[:1].upper() + e.message[1:] + "."
        return error_page(request, _REFUSED[type(e)], message, e.type, e.headers)
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
