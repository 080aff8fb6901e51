"""One error shape for every JSON API: {"error": {"message", "type"}} with a status code."""
from __future__ import annotations

import errno
import logging
import time
from urllib.parse import unquote_to_bytes

import asyncpg
import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.domain import errors as domain
from gateway.domain.errors import (
    ApiError,
    BadRequest,
    HeadersTooLarge,
    NotFound,
    UriTooLong,
)

log = logging.getLogger(__name__)


# What a lost or refused database connection raises: durable writes answer 503 + Retry-After.
# OSError is here for the socket errors of connecting (refused, unreachable, "Multiple
# exceptions" from several addresses); a file-system OSError is told apart by `storage_error`.
DB_UNAVAILABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                  asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.ConnectionDoesNotExistError,
                  asyncpg.InternalClientError,  # a connection torn down mid-query by a server shutdown
                  TimeoutError)
# errnos that only the artifact store's disk gives (a socket never reports these)
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG}


def storage_error(e: BaseException) -> ApiError | None:
    """The domain error of a file-system failure (the artifact store), or None for anything else.
    A file-system call names its file (`filename`); a socket error never does, so a full disk or a
    missing directory is never taken for a database outage."""
    if not isinstance(e, OSError) or isinstance(e, (ConnectionError, TimeoutError)):
        return None
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return domain.StorageFull("the artifact storage is full; retry after space is freed")
    if e.filename is not None or e.errno in _STORAGE_ERRNOS:
        return domain.StorageFailed(f"the artifact storage failed: {e.strerror or type(e).__name__}")
    return None


# What PostgreSQL refused of a value the request carried (SQLSTATE class 22), in words that name
# no SQL: its own text quotes query arguments and statements.
_DATA_ERRORS = {"22021": "text containing a NUL character or bytes that are not UTF-8",
                "22P05": "text containing a NUL character", "22003": "a number out of range",
                "2201W": "a negative limit", "2201X": "a negative offset", "22001": "text that is too long",
                "22007": "a malformed date or time", "22008": "a date or time out of range"}


MAX_URL = 4096  # path + query: every URL this API hands out or accepts is far shorter
MAX_HEADER = 8192  # one header field (name + value)
MAX_HEADERS = 100  # header fields per request


def _headers_too_large() -> ApiError:
    return HeadersTooLarge(f"request header fields are too large (at most {MAX_HEADERS} fields of {MAX_HEADER} bytes)")


def check_request_line(request: web.Request) -> ApiError | None:
    """Bad input in the URL that aiohttp lets through: a long URL, query bytes that are not
    UTF-8 (yarl would silently turn them into U+FFFD), control characters in path parameters,
    and non-ASCII digits (str.isdigit() accepts them, int() does not)."""
    raw = request.raw_path
    if len(raw) > MAX_URL:
        return UriTooLong(f"request URL is longer than {MAX_URL} bytes")
    headers = request.raw_headers
    if len(headers) > MAX_HEADERS:
        return _headers_too_large()
    for k, v in headers:  # a plain loop: cheaper than any() over a generator on the poll path
        if len(k) + len(v) > MAX_HEADER:
            return _headers_too_large()
    if "%" in raw:
        try:
            unquote_to_bytes(request.rel_url.raw_query_string).decode("utf-8")
        except UnicodeDecodeError:
            return BadRequest("query string is not valid UTF-8 once percent-decoded", type="invalid_encoding")
        if "%00" in raw:  # no text column can hold NUL: name the parameter, not a database error
            for name, value in request.query.items():
                if "\x00" in name or "\x00" in value:
                    return BadRequest(f"invalid value for query parameter {name[:40]!r}: it contains a NUL character")
    match_info = request.match_info
    if not match_info:
        return None
    for name, value in match_info.items():
        if value.isascii() and value.isprintable():
            continue
        if "\ufffd" in value or not value.isprintable():
            return BadRequest(f"path parameter {name} contains control characters or invalid UTF-8")
        if any(ch.isdigit() and not ch.isascii() for ch in value):
            return NotFound(f"no {name} {value[:40]!r}")
    return None


# The one table from a domain error to the HTTP status it answers with (the most specific class
# listed on the error's MRO wins).
STATUS: dict[type, int] = {
    domain.BadRequest: 400, domain.Unauthorized: 401, domain.Forbidden: 403, domain.NotFound: 404,
    domain.NotAllowed: 405, domain.Conflict: 409, domain.Gone: 410, domain.TooLarge: 413,
    domain.UriTooLong: 414, domain.UnsupportedMediaType: 415, domain.HeadersTooLarge: 431,
    domain.StorageFailed: 500, domain.StorageFull: 507, domain.TooManyRequests: 429, domain.Overloaded: 503,
    domain.ApiError: 400,
}


def status_of(e: ApiError) -> int:
    """The HTTP status of a domain error."""
    return next(STATUS[k] for k in type(e).__mro__ if k in STATUS)


def json_response(data, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json",
                        headers=headers)


def error_response(status: int, message: str, type_: str, headers: dict | None = None) -> web.Response:
    return json_response({"error": {"message": message, "type": type_}}, status=status, headers=headers)


class Inflight:
    """Requests being handled by this process, and the cap past which new ones are shed."""
    count = 0
    cap = 1024


def json_error(request: web.Request, status: int, message: str, type_: str, headers: dict | None = None):
    """How the API answers an error, the default `render` of instrument: `render(request, status,
    message, type, headers)` makes the response (the dashboard passes its HTML error page)."""
    return error_response(status, message, type_, headers)


def answer_error(request: web.Request, route: str, e: Exception) -> tuple | None:
    """(status, message, type, headers) for an exception a handler raised, or None when it is not
    ours to answer (an aiohttp redirect or bodyless answer, a client that went away)."""
    if isinstance(e, ApiError):
        return status_of(e), e.message, e.type, e.headers
    if isinstance(e, web.HTTPException):
        if e.status < 400 or e.empty_body:
            return None
        headers = {k: v for k, v in e.headers.items() if k.lower() not in ("content-type", "content-length")}
        # aiohttp's own text names the problem (e.g. the body size limit); its default is "413: reason"
        message = e.text if e.text and not e.text.startswith(f"{e.status}:") else e.reason
        return e.status, message, e.reason.lower().replace(" ", "_"), headers
    if isinstance(e, asyncpg.exceptions.DataError):
        # SQLSTATE class 22 (and asyncpg's argument encoding errors): a value from the request the
        # database cannot take (NUL in text, out of int64 range, negative LIMIT...); the
        # transaction was rolled back, so nothing was written. Handlers validate fields first, so
        # this is the net under them: its words never quote the database's (SQL, arguments).
        what = _DATA_ERRORS.get(getattr(e, "sqlstate", None) or "", "a value the database cannot store")
        log.warning("database refused a value on %s %s: %s", request.method, route, _first_line(e))
        return 400, f"invalid value in the request: {what}", "invalid_value", None
    if isinstance(e, UnicodeError):
        # header values arrive surrogate-escaped when they are not UTF-8; encoding them fails
        return 400, "the request contains text that is not valid UTF-8", "invalid_encoding", None
    if isinstance(e, ConnectionError) and client_gone(request):
        # the client went away mid-answer (e.g. a download cut): not the database's doing, and
        # nobody to answer (counted as 499, as nginx does)
        return None
    if (stored := storage_error(e)) is not None:
        log.error("artifact storage failed on %s %s: %s", request.method, route, e)
        return status_of(stored), stored.message, stored.type, None
    if isinstance(e, DB_UNAVAILABLE):
        log.warning("database unavailable on %s %s: %s", request.method, route, type(e).__name__)
        return 503, "the database is unavailable; retry later", "unavailable", {"Retry-After": "5"}
    log.exception("unhandled error on %s %s", request.method, route)
    return 500, "internal server error", "internal_error", None


class QuietMalformedRequests(logging.Filter):
    """On aiohttp's server logger: a request its parser refuses (bytes that are not HTTP, a URL
    with raw non-ASCII bytes, a control character in a header) is answered 400 by aiohttp and
    logged as "Error handling request" with the parser's traceback. That is the client's error,
    not the server's: it is logged at DEBUG without the traceback (one line per such request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError) or (exc.code or 400) >= 500:
            return True
        record.msg, record.args = "refused a malformed request: %s", (str(exc).splitlines()[0][:200],)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def quiet_malformed_requests() -> None:
    """Install QuietMalformedRequests on aiohttp's server logger (once per process)."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, QuietMalformedRequests) for f in server_log.filters):
        server_log.addFilter(QuietMalformedRequests())


def instrument(route: str, handler, *, shed: bool = True, render=json_error):
    """Wrap a handler with request metrics and error answers made by `render` (JSON by default).

    A per-handler wrapper instead of app middlewares: aiohttp's middleware chain costs several
    microseconds per request, which the poll path cannot afford."""
    from gateway.metrics import (
        METRICS,  # local: metrics imports nothing from here, keep it one-way
    )

    async def wrapped(request: web.Request) -> web.StreamResponse:
        t0 = time.perf_counter()
        status = 500
        if shed and Inflight.count >= Inflight.cap:
            # shed before queueing makes latency collapse for everyone
            METRICS.inc("ota_gateway_http_requests", (route, request.method, "503"))
            return render(request, 503, "the gateway is overloaded; retry later", "overloaded", {"Retry-After": "1"})
        Inflight.count += 1
        try:
            if (bad := check_request_line(request)) is not None:
                raise bad
            resp = await handler(request)
            status = resp.status
            return resp
        except Exception as e:  # noqa: BLE001 - every failure is answered, by kind (answer_error)
            answer = answer_error(request, route, e)
            if answer is None and isinstance(e, web.HTTPException):
                status = e.status
                raise
            if answer is None:
                # a client gone: re-raised, aiohttp would log it as an error of its handler. An
                # answer nobody reads ends the request quietly (its write fails on the closed
                # transport, which aiohttp takes for the premature disconnection it is)
                status = 499
                return web.Response(status=499)
            status = answer[0]
            return render(request, *answer)
        finally:
            Inflight.count -= 1
            METRICS.inc("ota_gateway_http_requests", (route, request.method, str(status)))
            METRICS.observe("ota_gateway_http_request_duration_seconds", (route,), time.perf_counter() - t0)

    wrapped.__name__ = getattr(handler, "__name__", "handler")
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200]


def client_gone(request: web.BaseRequest) -> bool:
    """Whether the client's connection is closed or closing: nothing more can be sent on it."""
    transport = request.transport
    return transport is None or transport.is_closing()


def add_route(app: web.Application, method: str, path: str, handler, *, shed: bool = True, mount: str = "",
              render=json_error) -> None:
    """Register an instrumented handler; GET also answers HEAD. `shed=False` for health checks,
    which must answer even when the gateway sheds load. On a sub-application, `mount` is the
    prefix it is mounted at, so that the metrics name the route as clients see it."""
    h = instrument(mount + path, handler, shed=shed, render=render)
    if method == "GET":
        app.router.add_get(path, h)
    else:
        app.router.add_route(method, path, h)


async def not_found(request: web.Request) -> web.Response:
    raise NotFound(f"no route for {request.method} {request.path}")
