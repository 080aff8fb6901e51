"""The web dashboard for release managers, served at /ui/: server-rendered HTML (Jinja2) over
the same service layer as the management REST API; no external requests of any kind.

`app` builds it as an aiohttp sub-application; `pages` holds the read-only pages, `forms` the
write forms, `login` logging in and out, `render` the page wrapper, error page and security
headers, `context` the session and project every handler starts from, `session` sessions and
CSRF, `filters` the templates' filters."""
from __future__ import annotations

from gateway.ui.app import MOUNT, dashboard

__all__ = ["MOUNT", "dashboard"]
