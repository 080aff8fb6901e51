"""HTTP delivery of content-addressed artifact bytes, CDN style.

- strong ETag = the quoted sha256 of the content; `Cache-Control: public, max-age=31536000,
  immutable` (the bytes behind a hash never change);
- conditional requests: If-None-Match / If-Modified-Since -> 304; If-Range in both its ETag and
  date forms (a stale validator gets the whole body, never a range of other bytes);
- one range (`a-b`, `a-`, `-n`) -> 206 with Content-Range; several ranges -> the whole body
  (allowed by RFC 9110, and simpler for firmware clients than multipart); an unsatisfiable one
  -> 416 with `Content-Range: bytes */size`; a malformed Range header is ignored;
- precompressed `.gz` sidecars only when the client asked (`Accept-Encoding`), never on the fly;
- Content-Length always; the body goes through `loop.sendfile` (zero-copy) where the event loop
  supports it, else in chunks.
"""
from __future__ import annotations

import asyncio
import email.utils
import os
from pathlib import Path

from aiohttp import web

from .appkeys import SETTINGS
from .metrics import METRICS

CHUNK = 256 * 1024
IMMUTABLE = "public, max-age=31536000, immutable"


def parse_range(header: str, size: int) -> tuple[int, int] | None | str:
    """(start, end) inclusive for one satisfiable range; None to serve the whole body
    (absent, malformed or several ranges); "unsatisfiable" for a 416."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        return None
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if len(parts) != 1:
        return None
    first, dash, last = parts[0].partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if not first:  # suffix: the last n bytes
        if not last.isdigit():
            return None
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    if not first.isdigit() or (last and not last.isdigit()):
        return None
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


def _etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags


def _http_date(header: str | None) -> float | None:
    if not header:
        return None
    try:
        return email.utils.parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


async def send_blob(request: web.Request, path: Path, sha256: str, *, headers: dict | None = None) -> web.StreamResponse:
    """Answer GET/HEAD for the file at `path` whose content hash is `sha256`."""
    accel = request.app[SETTINGS].accel_redirect
    if accel:  # a front proxy (nginx) sends the bytes: sendfile, ranges, keep-alive, at its speed
        return web.Response(headers={
            "X-Accel-Redirect": f"{accel.rstrip('/')}/{sha256[:2]}/{sha256}", "ETag": f'"{sha256}"',
            "Cache-Control": IMMUTABLE, "Content-Type": "application/octet-stream", **(headers or {})})
    try:
        st = path.stat()
    except FileNotFoundError:
        raise web.HTTPNotFound() from None
    size = st.st_size
    etag = f'"{sha256}"'
    mtime = int(st.st_mtime)
    base = {"ETag": etag, "Last-Modified": email.utils.formatdate(mtime, usegmt=True), "Cache-Control": IMMUTABLE,
            "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream", **(headers or {})}
    h = request.headers
    inm = h.get("If-None-Match")
    if (inm is not None and _etag_matches(inm, etag)) or \
            (inm is None and (ims := _http_date(h.get("If-Modified-Since"))) is not None and mtime <= ims):
        return web.Response(status=304, headers=base)

    rng = None
    if "Range" in h:
        if_range = h.get("If-Range")
        fresh = True
        if if_range:
            if_range = if_range.strip()
            if if_range.startswith(('"', "W/")):
                fresh = if_range == etag  # weak validators never match for ranges
            else:
                d = _http_date(if_range)
                fresh = d is not None and mtime <= d
        if fresh:
            rng = parse_range(h["Range"], size)
    if rng == "unsatisfiable":
        return web.Response(status=416, headers={**base, "Content-Range": f"bytes */{size}"})

    file_path, encoding = path, None
    if rng is None and size > 1024:
        accept = h.get("Accept-Encoding", "")
        gz = path.with_name(path.name + ".gz")
        if "gzip" in accept and gz.exists():
            file_path, encoding = gz, "gzip"
    if encoding:
        base.update({"Content-Encoding": encoding, "Vary": "Accept-Encoding",
                     "ETag": f'"{sha256}-{encoding}"'})
        size = file_path.stat().st_size
    if rng is None:
        status, offset, count = 200, 0, size
    else:
        status, offset, count = 206, rng[0], rng[1] - rng[0] + 1
        base["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{size}"
    resp = web.StreamResponse(status=status, headers=base)
    resp.content_length = count
    await resp.prepare(request)
    if request.method == "HEAD" or count == 0:
        await resp.write_eof()
        return resp
    await _send(request, resp, file_path, offset, count)
    METRICS.inc("ota_gateway_artifact_bytes", (), count)
    await resp.write_eof()
    return resp


async def _send(request: web.Request, resp: web.StreamResponse, path: Path, offset: int, count: int) -> None:
    loop = asyncio.get_running_loop()
    with open(path, "rb") as f:
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("connection lost")
        try:
            await loop.sendfile(transport, f, offset, count, fallback=False)
            return
        except (NotImplementedError, RuntimeError, TypeError, AttributeError):
            pass  # uvloop and TLS transports have no native sendfile
        f.seek(offset)
        remaining = count
        while remaining > 0:
            chunk = f.read(min(CHUNK, remaining))
            if not chunk:
                raise ConnectionResetError("file shrank while sending")
            await resp.write(chunk)
            remaining -= len(chunk)


def write_gzip_sidecar(path: Path, *, min_saving: float = 0.1, max_size: int = 256 * 1024 * 1024) -> bool:
    """Compress once at upload time, keep the sidecar only if it saves at least `min_saving`."""
    import gzip

    size = path.stat().st_size
    if size < 4096 or size > max_size:
        return False
    tmp = path.with_name(path.name + ".gz.tmp")
    with open(path, "rb") as src, open(tmp, "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as dst:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
    if tmp.stat().st_size > size * (1 - min_saving):
        tmp.unlink()
        return False
    os.replace(tmp, path.with_name(path.name + ".gz"))
    return True
