"""HTTP delivery of content-addressed artifact bytes, CDN style.

- strong ETag = the quoted sha256 of the content; `Cache-Control: public, max-age=31536000,
  immutable` (the bytes behind a hash never change);
- conditional requests: If-Match / If-Unmodified-Since -> 412 when they fail; If-None-Match /
  If-Modified-Since -> 304; If-Range in both its ETag and date forms (a stale validator gets the
  whole body, never a range of other bytes); every date through `http_date`, where one that is
  not a valid HTTP-date makes its condition absent;
- one range (`a-b`, `a-`, `-n`) -> 206 with Content-Range; several ranges -> the whole
  body (allowed by RFC 9110, and simpler for firmware clients than multipart); an unsatisfiable,
  malformed, reversed or overlapping one -> 416 with `Content-Range: bytes */size` and a JSON
  error naming the problem; another range unit is ignored;
- precompressed `.gz` sidecars only when the client asked (`Accept-Encoding`), never on the fly;
- Content-Length always; the body goes in chunks, each through `loop.sendfile` (zero-copy) where
  the event loop supports it, under the minimum-rate rule (`minrate`): a client slower than
  OTA_MIN_TRANSFER_RATE over OTA_TRANSFER_RATE_WINDOW is cut, a slow but steady one never.
"""
from __future__ import annotations

import asyncio
import email.utils
import time
from pathlib import Path

import orjson
from aiohttp import web

from gateway.appkeys import SETTINGS
from gateway.http.errors import client_gone
from gateway.http.minrate import RateRule, drained, guarded, unsent
from gateway.metrics import METRICS

CHUNK = 256 * 1024
IMMUTABLE = "public, max-age=31536000, immutable"


class RangeError(ValueError):
    """A Range header answered with 416: malformed, reversed, overlapping or too many ranges."""


class Unsatisfiable(RangeError):
    """A well-formed range that starts past the end of the artifact."""


_MAX_RANGES = 16


def _spec(part: str, size: int) -> tuple[int, int]:
    """One `a-b` / `a-` / `-n` range as inclusive (start, end), clamped to the size."""
    first, dash, last = part.partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first or last) or not all(x.isascii() and x.isdigit() and len(x) <= 20
                                                   for x in (first, last) if x):
        raise RangeError(f"malformed range {part[:40]!r}: expected first-last, first- or -suffix in bytes")
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise Unsatisfiable(f"range {part!r} is not satisfiable: the artifact has {size} bytes")
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        raise RangeError(f"malformed range {part!r}: the last byte is before the first")
    if start >= size:
        raise Unsatisfiable(f"range {part!r} is not satisfiable: the artifact has {size} bytes")
    return start, min(end, size - 1)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive for one satisfiable range; None to serve the whole body (another
    unit, which RFC 9110 says to ignore, or a satisfiable set of several ranges, which we answer
    with the whole body rather than multipart: never a 416 for ranges we could serve);
    RangeError for a 416.

    A malformed or reversed range is refused rather than ignored: a firmware client that asked
    for a piece must never take a 200 with the whole file for it (esp-idf #17960)."""
    unit, eq, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not eq or not parts:
        raise RangeError("malformed Range header: no byte range after 'bytes='")
    if len(parts) == 1:
        return _spec(parts[0], size)
    satisfiable = False
    for part in parts[:_MAX_RANGES]:
        try:
            _spec(part, size)
            satisfiable = True
        except Unsatisfiable:
            pass  # a set is satisfiable when any of its ranges is
    if not satisfiable:
        raise Unsatisfiable(f"no range of {header[:60]!r} is satisfiable: the artifact has {size} bytes")
    return None


def _etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags


def http_date(header: str | None) -> float | None:
    """The POSIX time of an HTTP-date (RFC 9110 5.6.7, any of its three formats), or None for
    anything else: every conditional header reads its date through here. A date that is not
    one (garbage, year 99999, a day or hour of twenty digits, which overflow C integers deep in
    the parser) makes the condition absent, as RFC 9110 says to treat an invalid date."""
    if not header or len(header) > 64:  # the longest valid form is 37 characters
        return None
    try:
        return email.utils.parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _not_modified(h, etag: str, mtime: int) -> bool:
    """If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2)."""
    inm = h.get("If-None-Match")
    if inm is not None:
        return _etag_matches(inm, etag)
    ims = http_date(h.get("If-Modified-Since"))
    # a date later than now is not a valid validator (RFC 7232 3.3): year 9999 must not pin a 304
    return ims is not None and mtime <= ims <= time.time()


def _precondition_failed(h, etag: str, mtime: int) -> str | None:
    """The header whose precondition fails (If-Match, else If-Unmodified-Since: RFC 9110 13.2.2),
    or None: a client resuming a download must not get bytes of other content."""
    im = h.get("If-Match")
    if im is not None:
        # strong comparison (a weak tag never matches); the gzip sidecar's tag names the same bytes
        tags = [t.strip() for t in im.split(",")]
        return None if "*" in tags or etag in tags or etag[:-1] + '-gzip"' in tags else "If-Match"
    ius = http_date(h.get("If-Unmodified-Since"))
    return "If-Unmodified-Since" if ius is not None and mtime > ius else None


def _range_applies(h, etag: str, mtime: int) -> bool:
    """Whether a Range header is honoured: only while an If-Range validator still matches."""
    if_range = h.get("If-Range")
    if not if_range:
        return True
    if_range = if_range.strip()
    if if_range.startswith(('"', "W/")):
        return if_range == etag  # weak validators never match for ranges
    d = http_date(if_range)
    return d is not None and mtime <= d


def _error(status: int, message: str, kind: str, base: dict, **extra: str) -> web.Response:
    return web.Response(body=orjson.dumps({"error": {"message": message, "type": kind}}), status=status,
                        content_type="application/json",
                        headers={**{k: v for k, v in base.items() if k != "Content-Type"}, **extra})


def _unsatisfiable(e: RangeError, base: dict, size: int) -> web.Response:
    kind = "range_not_satisfiable" if isinstance(e, Unsatisfiable) else "invalid_range"
    return _error(416, str(e), kind, base, **{"Content-Range": f"bytes */{size}"})


def _accel(accel: str, sha256: str, headers: dict | None) -> web.Response:
    """A front proxy (nginx) sends the bytes: sendfile, ranges, keep-alive, at its speed."""
    return web.Response(headers={
        "X-Accel-Redirect": f"{accel.rstrip('/')}/{sha256[:2]}/{sha256}", "ETag": f'"{sha256}"',
        "Cache-Control": IMMUTABLE, "Content-Type": "application/octet-stream", **(headers or {})})


async def send_blob(request: web.Request, path: Path, sha256: str, *, headers: dict | None = None) -> web.StreamResponse:
    """Answer GET/HEAD for the file at `path` whose content hash is `sha256`."""
    accel = request.app[SETTINGS].accel_redirect
    if accel:
        return _accel(accel, sha256, headers)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise web.HTTPNotFound() from None
    size, etag, mtime = st.st_size, f'"{sha256}"', int(st.st_mtime)
    base = {"ETag": etag, "Last-Modified": email.utils.formatdate(mtime, usegmt=True), "Cache-Control": IMMUTABLE,
            "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream", **(headers or {})}
    h = request.headers
    if (failed := _precondition_failed(h, etag, mtime)) is not None:
        return _error(412, f"{failed} does not match the artifact", "precondition_failed", base)
    if _not_modified(h, etag, mtime):
        return web.Response(status=304, headers=base)
    rng = None
    if "Range" in h and _range_applies(h, etag, mtime):
        try:
            rng = parse_range(h["Range"], size)
        except RangeError as e:
            return _unsatisfiable(e, base, size)
    file_path = path
    gz = path.with_name(path.name + ".gz")
    if rng is None and size > 1024 and "gzip" in h.get("Accept-Encoding", "") and gz.exists():
        file_path = gz
        base.update({"Content-Encoding": "gzip", "Vary": "Accept-Encoding", "ETag": f'"{sha256}-gzip"'})
        size = gz.stat().st_size
    if rng is None:
        status, offset, count = 200, 0, size
    else:
        status, offset, count = 206, rng[0], rng[1] - rng[0] + 1
        base["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{size}"
    return await _stream(request, status, base, file_path, offset, count)


async def _stream(request: web.Request, status: int, headers: dict, path: Path, offset: int,
                  count: int) -> web.StreamResponse:
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = count
    await resp.prepare(request)
    if request.method == "HEAD" or count == 0:
        await resp.write_eof()
        return resp
    await _send(request, resp, path, offset, count)
    METRICS.inc("ota_gateway_artifact_bytes", (), count)
    await resp.write_eof()
    return resp


def rate_rule(request: web.Request) -> RateRule:
    """The minimum-rate rule of transfers (OTA_MIN_TRANSFER_RATE over OTA_TRANSFER_RATE_WINDOW)."""
    settings = request.app[SETTINGS]
    return RateRule(settings.min_transfer_rate, settings.transfer_rate_window)


async def _send(request: web.Request, resp: web.StreamResponse, path: Path, offset: int, count: int) -> None:
    """The bytes, in chunks (`sendfile` where the event loop has it), under the minimum-rate rule:
    a client too slow over the window is cut (`minrate.TooSlow`)."""
    loop, transport = asyncio.get_running_loop(), request.transport
    sent = [0]
    native = True

    def taken() -> int:  # what the client acknowledged
        return sent[0] - unsent(transport) if transport is not None else sent[0]

    async with guarded(transport, taken, rate_rule(request), "download"):
        with open(path, "rb") as f:
            while sent[0] < count:
                if client_gone(request):
                    raise ConnectionResetError("connection lost")
                n = min(CHUNK, count - sent[0])
                if native:
                    try:
                        await loop.sendfile(transport, f, offset + sent[0], n, fallback=False)
                        sent[0] += n
                        continue
                    except (NotImplementedError, RuntimeError, TypeError, AttributeError):
                        native = False  # uvloop and TLS transports have no native sendfile
                f.seek(offset + sent[0])
                chunk = f.read(n)
                if not chunk:
                    raise ConnectionResetError("file shrank while sending")
                await resp.write(chunk)
                sent[0] += len(chunk)
        if transport is not None:
            await drained(transport)
