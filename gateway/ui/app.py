"""The dashboard as an aiohttp sub-application, mounted at /ui by `gateway.app`: its templates,
its routes and their instrumentation. Every route goes through `gateway.http.errors.instrument`
like the API's (request metrics under its full route template, load shedding, one error
classification) with the HTML error page as the way errors are rendered; `render.page` adds the
login redirect, and an on_response_prepare hook the security headers of every response.

No middleware: a middleware on any sub-application makes aiohttp run a middleware chain for
every request of the whole gateway, polls included."""
from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from gateway.http.errors import add_route
from gateway.ui import forms, login, pages, render
from gateway.ui.filters import FILTERS
from gateway.ui.session import UI_SECRET, _Secret

HERE = Path(__file__).resolve().parent
MOUNT = "/ui"
PP = "/p/{project}"


def routes(static_dir: Path) -> list[tuple[str, str, object]]:
    """(method, path under MOUNT, handler), in the order aiohttp tries them."""
    return [
        ("GET", "", pages.ui_root),
        ("GET", "/", pages.home),
        ("GET", "/login", login.login_page),
        ("POST", "/login", login.login),
        ("POST", "/logout", login.logout),
        ("GET", "/static/{name}", pages.static_files(static_dir)),
        ("GET", PP, pages.project_home),
        ("GET", PP + "/", pages.project_home),
        ("GET", PP + "/releases", pages.releases_page),
        ("GET", PP + "/releases/{release}", pages.release_page),
        ("GET", PP + "/cohorts", pages.cohorts_page),
        ("GET", PP + "/cohorts/{cohort}", pages.matrix_page),
        ("POST", PP + "/deployments", forms.activate),
        ("POST", PP + "/deployments/{id}/rollout", forms.change_rollout),
        ("POST", PP + "/deployments/{id}/abort", forms.abort),
        ("GET", PP + "/requests", pages.requests_page),
        ("POST", PP + "/requests/{id}/{decision:approve|reject}", forms.decide),
        ("GET", PP + "/devices", pages.devices_page),
        ("GET", PP + "/devices/{serial}", pages.device_page),
        ("POST", PP + "/devices/{serial}/actions/{id}/retry", forms.retry),
        ("GET", PP + "/audit", pages.audit_page),
        ("*", "/{tail:.*}", pages.ui_not_found),  # an HTML 404 for anything else under /ui
    ]


def dashboard() -> web.Application:
    """The dashboard application, to mount at MOUNT (`app.add_subapp(MOUNT, dashboard())`)."""
    app = web.Application()
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                               undefined=jinja2.StrictUndefined, default_helpers=False,
                               trim_blocks=True, lstrip_blocks=True)
    env.filters.update(FILTERS)
    app[UI_SECRET] = _Secret()
    app.on_response_prepare.append(render.secure)
    for method, path, handler in routes(HERE / "static"):
        add_route(app, method, path, render.page(handler), mount=MOUNT, render=render.error_page)
    return app
