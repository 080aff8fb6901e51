"""What a project page or form starts from: the caller's session and the service-layer Context of
the project in the URL (for a form POST also the form, CSRF-checked first), and ids from URLs."""
from __future__ import annotations

from aiohttp import web

from gateway.appkeys import RESOURCES
from gateway.domain.errors import BadRequest
from gateway.domain.fields import parse_id, parse_int
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
    """An id from a URL or a form: a value that is not a number names nothing (404); one past
    the id range is refused naming `what` (400). `domain.fields.parse_id`, as the API's ids."""
    return parse_id(value, what)


def form_text(form, name: str, *, max_len: int = 256) -> str:
    """A form field as text ("" when missing): the one way a form's fields are read, so that a
    file part where text belongs, a value past `max_len` or control characters (NUL, CR/LF)
    answer 400 naming the field instead of travelling on to SQL, a redirect or a template.
    A field sent several times reads as its first value, as `MultiDict.get` gives it."""
    value = form.get(name, "")
    if not isinstance(value, str):
        raise BadRequest(f"form field {name} must be text, not a file")
    if len(value) > max_len:
        raise BadRequest(f"form field {name} is longer than {max_len} characters")
    if not value.isprintable():
        raise BadRequest(f"form field {name} must not contain control characters")
    return value


def form_int(form, name: str, *, lo: int, hi: int) -> int | None:
    """An integer form field from lo to hi, None when empty; 400 naming the field otherwise."""
    return parse_int(form_text(form, name, max_len=32), f"form field {name}", default=None, lo=lo, hi=hi)
