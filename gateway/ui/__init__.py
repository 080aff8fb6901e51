"""The web dashboard for release managers, served at /ui/: server-rendered HTML (Jinja2) over
the same service layer as the management REST API; no external requests of any kind."""
from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from gateway.ui import views
from gateway.ui.session import UI_SECRET, _Secret

HERE = Path(__file__).resolve().parent


def setup(app: web.Application) -> None:
    """Register the dashboard's routes; call before the catch-all 404 route."""
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                               undefined=jinja2.StrictUndefined, default_helpers=False,
                               trim_blocks=True, lstrip_blocks=True)
    env.filters.update(views.FILTERS)
    app[UI_SECRET] = _Secret()
    views.add_routes(app, HERE / "static")
