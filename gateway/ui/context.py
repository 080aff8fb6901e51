"""What a project page or form starts from: the caller's session and the service-layer Context of
the project in the URL (for a form POST also the form, CSRF-checked first), and ids from URLs."""
from __future__ import annotations

from aiohttp import web

from gateway.appkeys import RESOURCES
from gateway.domain.errors import NotFound
from gateway.services import Context, project_context
from gateway.ui import session


async def _project(request: web.Request, sess: session.Session) -> Context:
    # the dashboard's URLs name no organization: it is the session's
    return await project_context(request.config_dict[RESOURCES], sess.ident, sess.ident.org_slug,
                                 request.match_info["project"])


async def page_context(request: web.Request) -> tuple[session.Session, Context]:
    sess = await session.current(request)
    return sess, await _project(request, sess)


async def form_context(request: web.Request) -> tuple[session.Session, Context, dict]:
    """A form POST to a project page: session, context and the form, CSRF-checked first."""
    sess = await session.current(request)
    form = await request.post()
    session.check_csrf(form, sess)
    return sess, await _project(request, sess), form


def number(value: str, what: str) -> int:
    """An id from a URL or a form: a value that is not a number names nothing (404)."""
    if not value.isdigit():
        raise NotFound(f"{what} {value!r} not found")
    return int(value)
