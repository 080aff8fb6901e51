"""Device poll answers written as one prebuilt buffer, below aiohttp's response machinery.

A `web.Response` costs a third of a bare aiohttp handler's CPU: a header multidict built from a
dict, headers prepared and serialised on every answer, a payload writer and two write calls.
A poll answer is one of a handful of fixed header sets and a cached body, so its status line and
headers are built once per header set (`Head`), and each answer is that block, Content-Length,
Date and the body, handed to the transport in one write. aiohttp's request handler only asks a
handler's answer to `prepare`, `write_eof` and say whether to `keep_alive`, which `RawResponse`
does. Only plain HTTP/1.1 keep-alive GETs take this path; HEAD, HTTP/1.0 and `Connection: close`
requests get the same answer as an ordinary `web.Response`.

Header values come from the gateway (content types, fixed reasons, ETags), never from a request.
"""
from __future__ import annotations

from aiohttp import helpers, web
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11

from gateway.http import compat
from gateway.http.errors import client_gone

# an aiohttp internal (gateway/http/compat.py checks it at start; without it raw answers are off)
rfc822_formatted_time = getattr(helpers, "rfc822_formatted_time", None)

_REASONS = {200: "OK", 204: "No Content", 304: "Not Modified"}
_NO_BODY = (204, 304)
_date = ["", b""]  # aiohttp's cached Date text (a new string each second) and its bytes


class Head:
    """A status and header set, serialised once."""

    __slots__ = ("status", "headers", "block")

    def __init__(self, status: int, headers: dict[str, str]):
        for k, v in headers.items():
            if any(c in k + v for c in "\r\n\0") or k.lower() in ("content-length", "date", "connection"):
                raise ValueError(f"header {k!r} cannot be prebuilt")
        self.status = status
        self.headers = headers
        lines = [f"HTTP/1.1 {status} {_REASONS[status]}", *(f"{k}: {v}" for k, v in headers.items()),
                 f"Server: {SERVER_SOFTWARE}"]
        self.block = ("\r\n".join(lines) + "\r\n").encode("latin-1")


class RawResponse:
    """One answer: `head`, then Content-Length (unless 204/304), Date and `body`, in one write."""

    __slots__ = ("status", "_head", "_body")
    keep_alive = True  # only requests that keep the connection open get one

    def __init__(self, head: Head, body: bytes):
        self.status = head.status
        self._head = head
        self._body = body

    async def prepare(self, request: web.BaseRequest) -> None:
        if client_gone(request):
            raise ConnectionResetError("the client closed the connection")  # aiohttp's handler expects this
        transport = request.transport
        text = rfc822_formatted_time()
        if text is not _date[0]:
            _date[0], _date[1] = text, text.encode("ascii")
        body = self._body
        if self.status in _NO_BODY:
            transport.write(b"".join((self._head.block, b"Date: ", _date[1], b"\r\n\r\n")))
        else:
            transport.write(b"".join((self._head.block, b"Content-Length: ", str(len(body)).encode(),
                                      b"\r\nDate: ", _date[1], b"\r\n\r\n", body)))
        protocol = request.protocol
        if protocol._paused:  # the client does not read: wait, as aiohttp's writer does
            await protocol._drain_helper()

    async def write_eof(self, data: bytes = b"") -> None:
        """Everything was written by `prepare`."""


def answer(request: web.Request, head: Head, body: bytes = b"") -> web.StreamResponse:
    """The answer to a device poll: raw for a keep-alive HTTP/1.1 GET, else a `web.Response`.
    Also a `web.Response` when the start-up check (compat) found an internal RawResponse uses
    changed, or on a connection that access-logs (aiohttp's logger cannot read a raw answer)."""
    if compat.raw_answers and request.method == "GET" and request.version == HttpVersion11 and request.keep_alive:
        access_logger = request.protocol.access_logger
        if access_logger is None or not access_logger.enabled:
            return RawResponse(head, body)
        compat.access_logged()
    return web.Response(status=head.status, body=body if head.status not in _NO_BODY else None,
                        headers=head.headers)
