"""The aiohttp internals the device fast paths use, checked once when an app is built.

Two fast paths go below aiohttp's public API: `fastroute` (the hot routes resolved by comparing
path segments, installed as the router's `resolve`) and `rawresponse` (poll answers written to
the transport as one prebuilt buffer). pyproject.toml pins aiohttp to the minor versions the test
suite ran them on; this module is the second fence, for an aiohttp outside that range or one
that changed within it: `check(app)` probes each internal for the shape the fast path relies
on, and a fast path whose internal is missing or different turns itself off, with ONE warning
naming the internal. Off, the path is aiohttp's own: the same answers, at aiohttp's CPU cost.

Raw answers are also off on a connection with an active access logger: aiohttp's AccessLogger
reads a `web.StreamResponse` (body_length, headers), which a raw answer is not, so such a
connection gets `web.Response`s (and one warning per process). `ota-gateway serve` runs without
an access log (`access_log=None`, gateway/cli.py), see README.md "Running it".
"""
from __future__ import annotations

import email.utils
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

log = logging.getLogger("ota_gateway.compat")

RAW_ANSWERS = "raw poll answers"
FAST_ROUTES = "fast device routes"

# What the last check found; the fast paths read these. True until a check says otherwise (an
# app built without `init_app`, as in tests of one fast path, gets the paths as tested).
def index_key(canonical: str) -> str:
    """The key aiohttp files a resource under in `router._resource_index`: its path up to the
    segment of its first variable (fastroute relies on it; the check below verifies it)."""
    if "{" in canonical:
        canonical = canonical.partition("{")[0].rpartition("/")[0]
    return canonical.rstrip("/") or "/"


raw_answers = True    # rawresponse.answer
fast_routes = True    # fastroute.install


@dataclass(frozen=True)
class Internal:
    name: str                                        # what of aiohttp's is used
    path: str                                        # the fast path that needs it
    probe: Callable[[web.Application], str | None]   # None: as expected; else what is wrong


def _bare_protocol():
    """A server protocol object with only BaseProtocol's state (no connection, no server)."""
    from aiohttp.base_protocol import BaseProtocol
    from aiohttp.web_protocol import RequestHandler

    p = RequestHandler.__new__(RequestHandler)
    BaseProtocol.__init__(p, None)
    return p


def _probe_paused(app) -> str | None:
    """rawresponse reads `protocol._paused` (is the transport's write buffer full?) per answer."""
    p = _bare_protocol()
    seen = [p._paused]
    p.pause_writing()
    seen.append(p._paused)
    p.resume_writing()
    seen.append(p._paused)
    if seen != [False, True, False]:
        return f"does not follow pause_writing/resume_writing (read {seen})"
    return None


def _probe_drain_helper(app) -> str | None:
    """rawresponse awaits `protocol._drain_helper()` when writing is paused, as aiohttp's writer does."""
    from aiohttp.web_protocol import RequestHandler

    fn = getattr(RequestHandler, "_drain_helper", None)
    if fn is None:
        return "missing"
    if not inspect.iscoroutinefunction(fn):
        return "not a coroutine function"
    params = list(inspect.signature(fn).parameters.values())[1:]
    if any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
        return f"takes arguments {inspect.signature(fn)}"
    return None


def _probe_formatted_time(app) -> str | None:
    """rawresponse takes the Date header text from aiohttp's per-second cache."""
    from aiohttp import helpers

    fn = getattr(helpers, "rfc822_formatted_time", None)
    if not callable(fn):
        return "missing"
    text = fn()
    if not isinstance(text, str):
        return f"returns {type(text).__name__}, not str"
    try:
        when = email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError):
        return f"returns {text!r}, not an RFC 822 date"
    if abs(when - time.time()) > 120:
        return f"returns {text!r}, not the current time"
    return None


def _probe_access_logger(app) -> str | None:
    """rawresponse.answer asks the connection's `access_logger` (None, or `.enabled`) whether a
    raw answer would be access-logged."""
    from aiohttp.abc import AbstractAccessLogger
    from aiohttp.web_protocol import RequestHandler

    if not hasattr(RequestHandler, "access_logger"):  # a slot's descriptor, or else set by __init__
        if "__slots__" in vars(RequestHandler) or "access_logger" not in RequestHandler.__init__.__code__.co_names:
            return "missing"
    if not isinstance(getattr(AbstractAccessLogger, "enabled", None), property):
        return "has no AbstractAccessLogger.enabled property"
    return None


def _probe_resource_index(app: web.Application) -> str | None:
    """fastroute reads `router._resource_index` (path prefix -> resources, in registration order)
    to know which resources aiohttp would try before a fast route's."""

    index = getattr(app.router, "_resource_index", None)
    if not isinstance(index, dict):
        return "missing" if index is None else f"a {type(index).__name__}, not a dict"
    for resource in app.router.resources():
        filed = index.get(index_key(resource.canonical))
        if not isinstance(filed, list) or resource not in filed:
            return f"has no {resource.canonical!r} under the key {index_key(resource.canonical)!r}"
    return None


def _probe_resolve_patch(app: web.Application) -> str | None:
    """fastroute sets `resolve` on the router instance, which Application._handle calls."""
    handle = getattr(web.Application, "_handle", None)
    names = getattr(getattr(handle, "__code__", None), "co_names", ())
    if "_router" not in names or "resolve" not in names:
        return "not what Application._handle resolves a request with"

    async def probe(request):  # pragma: no cover - never called
        raise AssertionError

    router = type(app.router)()  # a scratch one: the app's may carry the fast resolver already
    try:
        router.resolve = probe
        taken = router.resolve is probe
        del router.resolve
    except (AttributeError, TypeError) as e:
        return f"cannot be replaced on the router instance ({e})"
    if not taken or not inspect.iscoroutinefunction(router.resolve):
        return "cannot be replaced on the router instance"
    return None


INTERNALS: tuple[Internal, ...] = (
    Internal("aiohttp.base_protocol.BaseProtocol._paused", RAW_ANSWERS, _probe_paused),
    Internal("aiohttp.base_protocol.BaseProtocol._drain_helper", RAW_ANSWERS, _probe_drain_helper),
    Internal("aiohttp.helpers.rfc822_formatted_time", RAW_ANSWERS, _probe_formatted_time),
    Internal("aiohttp.web_protocol.RequestHandler.access_logger", RAW_ANSWERS, _probe_access_logger),
    Internal("aiohttp.web_urldispatcher.UrlDispatcher._resource_index", FAST_ROUTES, _probe_resource_index),
    Internal("aiohttp.web_urldispatcher.UrlDispatcher.resolve", FAST_ROUTES, _probe_resolve_patch),
)


def check(app: web.Application) -> dict[str, str]:
    """Probe every internal (after the app's routes are added); set `raw_answers` and
    `fast_routes`; log one warning for each internal that is not as expected and return
    {internal name: what is wrong}."""
    global raw_answers, fast_routes
    problems: dict[Internal, str] = {}
    for internal in INTERNALS:
        try:
            problem = internal.probe(app)
        except Exception as e:  # a probe that trips over a changed aiohttp: that is the finding
            problem = f"not as expected ({type(e).__name__}: {e})"
        if problem is not None:
            problems[internal] = problem
    raw_answers = not any(i.path == RAW_ANSWERS for i in problems)
    fast_routes = not any(i.path == FAST_ROUTES for i in problems)
    for internal, problem in problems.items():
        log.warning("aiohttp %s: %s: %s; %s are off (aiohttp's own path answers instead)",
                    aiohttp.__version__, internal.name, problem, internal.path)
    return {i.name: p for i, p in problems.items()}


_access_log_warned = False


def access_logged() -> None:
    """A poll on a connection whose access logger is on got a `web.Response` instead of a raw
    answer: say so once per process."""
    global _access_log_warned
    if not _access_log_warned:
        _access_log_warned = True
        log.warning("aiohttp's access log is on: %s are off on its connections (a raw answer cannot be "
                    "access-logged); `ota-gateway serve` runs with access_log=None", RAW_ANSWERS)
