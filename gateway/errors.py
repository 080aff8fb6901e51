"""One error shape for every JSON API: {"error": {"message", "type"}} with a status code."""
from __future__ import annotations

import logging

import orjson
from aiohttp import web

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 400
    type = "bad_request"

    def __init__(self, message: str, *, status: int | None = None, type: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.headers = headers or {}


class BadRequest(ApiError):
    status, type = 400, "bad_request"


class Unauthorized(ApiError):
    status, type = 401, "unauthorized"


class Forbidden(ApiError):
    status, type = 403, "forbidden"


class NotFound(ApiError):
    status, type = 404, "not_found"


class Conflict(ApiError):
    status, type = 409, "conflict"


class TooLarge(ApiError):
    status, type = 413, "payload_too_large"


def json_response(data, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json",
                        headers=headers)


def error_response(status: int, message: str, type_: str, headers: dict | None = None) -> web.Response:
    return json_response({"error": {"message": message, "type": type_}}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler):
    """Turn ApiError and aiohttp's own HTTP errors into JSON; log unexpected failures once."""
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(e.status, e.message, e.type, e.headers)
    except web.HTTPException as e:
        if e.status < 400 or e.empty_body:
            raise
        return error_response(e.status, e.reason, e.reason.lower().replace(" ", "_"), dict(e.headers))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.match_info.route.resource
                      and request.match_info.route.resource.canonical)
        return error_response(500, "internal server error", "internal_error")
