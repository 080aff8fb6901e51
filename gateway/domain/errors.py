"""The errors a use case raises. Each kind carries a message for people and a machine-readable
`type`; the HTTP status each kind answers with is decided in one place, `gateway.http.errors`
(STATUS), so nothing below the HTTP layer knows about status codes."""
from __future__ import annotations


class ApiError(Exception):
    """A request that cannot be carried out; subclasses say why."""
    type = "bad_request"

    def __init__(self, message: str, *, type: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        if type is not None:
            self.type = type
        self.headers = headers or {}


class BadRequest(ApiError):
    """The request is malformed or names something inconsistent."""
    type = "bad_request"


class Unauthorized(ApiError):
    """No valid credentials."""
    type = "unauthorized"


class Forbidden(ApiError):
    """Valid credentials that may not do this."""
    type = "forbidden"


class NotFound(ApiError):
    """What the request names does not exist (or is not the caller's)."""
    type = "not_found"


class NotAllowed(ApiError):
    """The thing exists, but this action does not apply to it in its state."""
    type = "not_allowed"


class Conflict(ApiError):
    """The request contradicts the current state."""
    type = "conflict"


class Gone(ApiError):
    """The thing existed and is closed for good."""
    type = "gone"


class TooLarge(ApiError):
    """The request body is over the limit."""
    type = "payload_too_large"


class UriTooLong(ApiError):
    """The request URL is over the limit."""
    type = "uri_too_long"


class UnsupportedMediaType(ApiError):
    """A body of a media type the endpoint does not read."""
    type = "unsupported_media_type"


class HeadersTooLarge(ApiError):
    """Too many or too large request header fields."""
    type = "header_fields_too_large"


class StorageFailed(ApiError):
    """The artifact storage could not store or read a file (a file-system error, not the database)."""
    type = "storage_failed"


class StorageFull(StorageFailed):
    """The artifact storage is out of space (or quota)."""
    type = "insufficient_storage"


class TooManyRequests(ApiError):
    """The caller is over a rate limit; retry after the Retry-After header says."""
    type = "rate_limited"


class Overloaded(ApiError):
    """The server cannot take this now (a bounded queue is full); retry after Retry-After."""
    type = "overloaded"
