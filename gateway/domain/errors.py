"""The errors a use case raises: each names its HTTP status and a machine-readable type, and carries a message for people (gateway.http renders them as one JSON shape, the dashboard as a page)."""
from __future__ import annotations



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


class UnsupportedMediaType(ApiError):
    status, type = 415, "unsupported_media_type"
