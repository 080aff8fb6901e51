"""How the dashboard answers: pages rendered from templates, redirects, the HTML error page
(also for every error `gateway.http.errors.instrument` catches or sheds), the login redirect
for handlers that need a session, and the security headers of every dashboard response."""
from __future__ import annotations

from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web

from gateway.domain.access import ROLES
from gateway.ui import session

UI = "/ui/"
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
# the dashboard's words for the errors the gateway raises itself (by their API type); the
# errors of the service layer show their own message
WORDING = {
    "unavailable": "The database is unavailable; retry in a moment.",
    "internal_error": "Internal server error.",
    "overloaded": "The gateway is overloaded; retry in a moment.",
}


async def secure(request: web.Request, resp: web.StreamResponse) -> None:
    """The dashboard's on_response_prepare hook: security headers on every response (a handler's
    own, such as the static files' Cache-Control, are kept)."""
    for name, value in SECURITY_HEADERS.items():
        resp.headers.setdefault(name, value)


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def safe_next(nxt: str) -> bool:
    """Whether a `next` or `back` URL stays on the dashboard (never an open redirect) and can be
    sent as a Location header: printable ASCII without spaces, so no CR/LF (which aiohttp would
    refuse to write, dropping the connection) and nothing a browser reads another way."""
    return (nxt.startswith("/ui/") and not nxt.startswith("//") and "\\" not in nxt and len(nxt) <= 2048
            and nxt.isascii() and nxt.isprintable() and " " not in nxt)


def can_edit(ident) -> bool:
    return ROLES[ident.role] >= ROLES["editor"]


def render(request: web.Request, template: str, sess: session.Session | None, status: int = 200, **ctx):
    ctx.setdefault("project", None)
    ctx.setdefault("nav", "")
    ident = sess.ident if sess else None
    return aiohttp_jinja2.render_template(template, request, {
        "ident": ident, "csrf": sess.csrf if sess else "", "can_edit": bool(ident and can_edit(ident)),
        **ctx}, status=status)


def error_page(request: web.Request, status: int, message: str, type_: str = "",
               headers: dict | None = None) -> web.Response:
    """The HTML error page: the `render` of `instrument` for the dashboard's routes."""
    resp = aiohttp_jinja2.render_template("error.html", request, {
        "ident": None, "csrf": "", "can_edit": False, "project": None, "nav": "", "status": status,
        "message": WORDING.get(type_, message)}, status=status)
    if headers:
        resp.headers.update(headers)
    return resp


def page(handler):
    """Wrap a dashboard handler: without a valid session a GET is sent to the login form and
    anything else refused. Errors are left to `instrument`, which renders them with error_page."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except session.LoginRequired:
            if request.method == "GET":
                return redirect("/ui/login?" + urlencode({"next": request.path_qs}))
            # a form posted without a session cannot carry a valid CSRF token
            return error_page(request, 403, "Your session has expired: log in again.")

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped
