"""Artifact storage and delivery.

Storage is content-addressed: `<storage>/<sha256[:2]>/<sha256>`. Uploads stream to a temporary
file while hashing, and are renamed into place only when complete, so a crash never leaves a
half-written payload visible. Downloads come from signed URLs and are served with
`delivery.send_blob` (Range / 206, HEAD, sha256 ETag, conditional requests, sidecars).
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway.appkeys import MIRROR, POOL, SETTINGS, SIGNER
from gateway.domain.errors import Forbidden, NotFound, TooLarge
from gateway.http.delivery import send_blob, write_gzip_sidecar
from gateway.http.errors import add_route
from gateway.store import releases as releases_store

CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class StoredBlob:
    size: int
    sha256: str
    md5: str
    sha1: str


class BlobStore:
    def __init__(self, root: str | os.PathLike, *, stale_after: float = 3600.0):
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.remove_stale(stale_after)

    def remove_stale(self, older_than: float) -> int:
        """Delete partial uploads left by a crash. An upload in progress (in any process sharing
        the store) keeps touching its file, so only long-untouched ones go."""
        import time

        removed = 0
        for f in self.tmp.glob("upload-*"):
            try:
                if time.time() - f.stat().st_mtime > older_than:
                    f.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    async def receive(self, content, max_size: int) -> StoredBlob:
        """Stream an aiohttp body into the store; raises TooLarge past `max_size`."""
        hashes = (hashlib.sha256(), hashlib.md5(), hashlib.sha1())
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix="upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in content.iter_chunked(CHUNK):
                    size += len(chunk)
                    if size > max_size:
                        raise TooLarge(f"Uploaded file is too big: the limit is {max_size} bytes")
                    for h in hashes:
                        h.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            blob = StoredBlob(size, *(h.hexdigest() for h in hashes))
            final = self.path(blob.sha256)
            final.parent.mkdir(exist_ok=True)
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, final)  # atomic: readers see the whole file or none
            return blob
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)


BLOBS = web.AppKey("blobs", BlobStore)


def new_upload_token() -> str:
    return "up_" + secrets.token_urlsafe(18)


async def put_upload(request: web.Request) -> web.Response:
    """PUT /api/v0/uploads/{token}?e=&s= — the signed upload target (no Authorization header)."""
    token = request.match_info["token"]
    if not request.app[SIGNER].verify(request.rel_url.raw_path, request.query.get("e"), request.query.get("s")):
        raise Forbidden("upload URL signature is invalid or expired")
    pool = request.app[POOL]
    upload = await releases_store.get_upload(pool, token)
    if upload is None:
        raise NotFound("unknown upload token")
    settings = request.app[SETTINGS]
    if request.content_length is not None and request.content_length > settings.max_upload_size:
        raise TooLarge(f"Uploaded file is too big: the limit is {settings.max_upload_size} bytes")
    blob = await request.app[BLOBS].receive(request.content, settings.max_upload_size)
    # compress once here, never per request; kept only where it pays (firmware rarely does)
    await asyncio.get_running_loop().run_in_executor(None, write_gzip_sidecar, request.app[BLOBS].path(blob.sha256))
    await releases_store.complete_upload(pool, token, blob.size, blob.sha256, blob.md5, blob.sha1)
    return web.Response(status=200, headers={"ETag": f'"{blob.md5}"'})


async def download(request: web.Request) -> web.StreamResponse:
    """GET/HEAD /dl/{payload_id}/{filename}?e=&s= — payload bytes from a signed URL."""
    if not request.app[SIGNER].verify(request.rel_url.raw_path, request.query.get("e"), request.query.get("s")):
        raise Forbidden("download URL signature is invalid or expired")
    raw_id = request.match_info["payload_id"]
    if not (raw_id.isascii() and raw_id.isdigit()):
        raise NotFound("unknown artifact")
    payload_id = int(raw_id)
    pl = None
    for project in request.app[MIRROR].projects.values():
        pl = project.payloads.get(payload_id)
        if pl is not None:
            break
    if pl is None:
        raise NotFound("unknown artifact")
    return await send_blob(request, request.app[BLOBS].path(pl.sha256), pl.sha256,
                           headers={"X-Checksum-Sha256": pl.sha256})


def setup(app: web.Application) -> None:
    add_route(app, "PUT", "/api/v0/uploads/{token}", put_upload)
    add_route(app, "GET", "/dl/{payload_id}/{filename}", download)
