"""One error shape for every JSON API: {"error": {"message", "type"}} with a status code."""
from __future__ import annotations

import logging
import time

from urllib.parse import unquote_to_bytes

import asyncpg
import orjson
from aiohttp import web
from gateway.domain.errors import ApiError, BadRequest, NotFound

log = logging.getLogger(__name__)


# What a lost or refused database connection raises: durable writes answer 503 + Retry-After.
DB_UNAVAILABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                  asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.ConnectionDoesNotExistError,
                  asyncpg.InternalClientError,  # a connection torn down mid-query by a server shutdown
                  TimeoutError)


MAX_URL = 4096  # path + query: every URL this API hands out or accepts is far shorter
MAX_HEADER = 8192  # one header field (name + value)
MAX_HEADERS = 100  # header fields per request


def _headers_too_large() -> ApiError:
    return ApiError(f"request header fields are too large (at most {MAX_HEADERS} fields of {MAX_HEADER} bytes)",
                    status=431, type="header_fields_too_large")


def check_request_line(request: web.Request) -> ApiError | None:
    """Bad input in the URL that aiohttp lets through: a long URL, query bytes that are not
    UTF-8 (yarl would silently turn them into U+FFFD), control characters in path parameters,
    and non-ASCII digits (str.isdigit() accepts them, int() does not)."""
    raw = request.raw_path
    if len(raw) > MAX_URL:
        return ApiError(f"request URL is longer than {MAX_URL} bytes", status=414, type="uri_too_long")
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


def json_response(data, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json",
                        headers=headers)


def error_response(status: int, message: str, type_: str, headers: dict | None = None) -> web.Response:
    return json_response({"error": {"message": message, "type": type_}}, status=status, headers=headers)


class Inflight:
    """Requests being handled by this process, and the cap past which new ones are shed."""
    count = 0
    cap = 1024


def instrument(route: str, handler, *, shed: bool = True):
    """Wrap a handler with the JSON error shape and request metrics.

    A per-handler wrapper instead of app middlewares: aiohttp's middleware chain costs several
    microseconds per request, which the poll path cannot afford."""
    from gateway.metrics import METRICS  # local: metrics imports nothing from here, keep it one-way

    async def wrapped(request: web.Request) -> web.StreamResponse:
        t0 = time.perf_counter()
        status = 500
        if shed and Inflight.count >= Inflight.cap:
            # shed before queueing makes latency collapse for everyone
            METRICS.inc("ota_gateway_http_requests", (route, request.method, "503"))
            return error_response(503, "the gateway is overloaded; retry later", "overloaded", {"Retry-After": "1"})
        Inflight.count += 1
        try:
            if (bad := check_request_line(request)) is not None:
                raise bad
            resp = await handler(request)
            status = resp.status
            return resp
        except ApiError as e:
            status = e.status
            return error_response(e.status, e.message, e.type, e.headers)
        except web.HTTPException as e:
            status = e.status
            if e.status < 400 or e.empty_body:
                raise
            headers = {k: v for k, v in e.headers.items() if k.lower() not in ("content-type", "content-length")}
            # aiohttp's own text names the problem (e.g. the body size limit); its default is "413: reason"
            message = e.text if e.text and not e.text.startswith(f"{e.status}:") else e.reason
            return error_response(e.status, message, e.reason.lower().replace(" ", "_"), headers)
        except asyncpg.exceptions.DataError as e:
            # SQLSTATE class 22 (and asyncpg's argument encoding errors): a value from the request
            # the database cannot take (NUL in text, out of int64 range, negative LIMIT...); the
            # transaction was rolled back, so nothing was written
            status = 400
            return error_response(400, f"invalid value in the request: {_first_line(e)}", "invalid_value")
        except UnicodeError:
            # header values arrive surrogate-escaped when they are not UTF-8; encoding them fails
            status = 400
            return error_response(400, "the request contains text that is not valid UTF-8", "invalid_encoding")
        except DB_UNAVAILABLE as e:
            if isinstance(e, ConnectionError) and client_gone(request):
                # the client went away mid-answer (e.g. a download cut): not the database's doing,
                # and nobody to answer; aiohttp drops it quietly. 499 as nginx counts it
                status = 499
                raise
            status = 503
            log.warning("database unavailable on %s %s: %s", request.method, route, type(e).__name__)
            return error_response(503, "the database is unavailable; retry later", "unavailable",
                                  {"Retry-After": "5"})
        except Exception:
            log.exception("unhandled error on %s %s", request.method, route)
            return error_response(500, "internal server error", "internal_error")
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


def add_route(app: web.Application, method: str, path: str, handler, *, shed: bool = True) -> None:
    """Register an instrumented handler; GET also answers HEAD. `shed=False` for health checks,
    which must answer even when the gateway sheds load."""
    h = instrument(path, handler, shed=shed)
    if method == "GET":
        app.router.add_get(path, h)
    else:
        app.router.add_route(method, path, h)


async def not_found(request: web.Request) -> web.Response:
    raise NotFound(f"no route for {request.method} {request.path}")
