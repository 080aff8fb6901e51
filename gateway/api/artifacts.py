"""Artifact uploads and delivery.

Storage is content-addressed (`gateway.memory.blobs`). An upload URL is single-use and bounded
by the size given when it was created (and the project-wide limit): its PUT claims the upload,
streams the bytes to a temporary file while hashing, records the blob on the upload's row, renames
it into place and marks the upload complete. Uploads that expire unused are removed by the
housekeeping task, with their blobs when nothing else refers to them. Downloads come from signed
URLs and are served with `delivery.send_blob` (Range / 206, HEAD, sha256 ETag, conditional
requests, sidecars).
"""
from __future__ import annotations

import asyncio
import logging
import secrets

from aiohttp import web

from gateway.aio import cancel_and_wait
from gateway.appkeys import MIRROR, POOL, SETTINGS, SIGNER
from gateway.domain.errors import Conflict, Forbidden, Gone, NotFound, TooLarge
from gateway.http.delivery import rate_rule, send_blob
from gateway.http.errors import add_route
from gateway.http.minrate import guarded
from gateway.memory.blobs import BlobStore, StoredBlob
from gateway.services import releases as releases_service
from gateway.store import releases as releases_store

BLOBS = web.AppKey("blobs", BlobStore)
CLEANUP_INTERVAL = 300.0  # seconds between housekeeping runs
CLEANUP_BATCH = 200  # expired uploads removed per run at most
log = logging.getLogger(__name__)


def new_upload_token() -> str:
    return "up_" + secrets.token_urlsafe(18)


def _limit(max_upload_size: int, declared: int | None) -> tuple[int, str]:
    """The PUT's size limit and the message when it is over."""
    if declared is not None and declared < max_upload_size:
        return declared, f"Uploaded file is too big: the upload was created for {declared} bytes"
    return max_upload_size, f"Uploaded file is too big: the limit is {max_upload_size} bytes"


_USED = "this upload URL has been used already (an upload is single-use); create another upload"


async def put_upload(request: web.Request) -> web.Response:
    """PUT /api/v0/uploads/{token}?e=&s= — the signed upload target (no Authorization header)."""
    token = request.match_info["token"]
    if not request.app[SIGNER].verify(request.rel_url.raw_path, request.query.get("e"), request.query.get("s")):
        raise Forbidden("upload URL signature is invalid or expired")
    pool = request.app[POOL]
    upload = await releases_store.get_upload(pool, token)
    if upload is None:
        raise NotFound("unknown upload token")
    if upload["status"] != "pending":
        raise Conflict(_USED, type="upload_used")
    limit, too_large = _limit(request.app[SETTINGS].max_upload_size, upload["max_size"])
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(too_large)
    if not await releases_store.claim_upload(pool, token):
        raise Conflict(_USED, type="upload_used")  # another PUT got there first
    try:
        blob = await _store(request, token, limit, too_large)
    except BaseException:
        try:  # the PUT failed: its URL may be used again
            await releases_store.release_upload(pool, token)
        except Exception as e:  # the database is down: the upload stays claimed until it expires
            log.warning("upload %s stays claimed: %s", token, type(e).__name__)
        raise
    return web.Response(status=200, headers={"ETag": f'"{blob.md5}"'})


async def _store(request: web.Request, token: str, limit: int, too_large: str) -> StoredBlob:
    pool, blobs = request.app[POOL], request.app[BLOBS]
    async with guarded(request.transport, lambda: request.content.total_bytes, rate_rule(request), "upload"):
        received = await blobs.receive(request.content, limit, too_large)
    try:
        blob = received.blob
        # on the row before the blob is in place: the cleanup keeps a blob an upload refers to
        async with pool.acquire() as conn:
            if not await releases_store.record_upload_blob(conn, token, blob.sha256):
                raise Gone("the upload expired and was removed while its bytes were received")
        await asyncio.get_running_loop().run_in_executor(None, blobs.place, received)
        await releases_store.complete_upload(pool, token, blob.size, blob.sha256, blob.md5, blob.sha1)
        return blob
    finally:
        blobs.discard(received)


async def clean_up(app: web.Application) -> None:
    """One housekeeping run: stale temporary files, and expired unused uploads (bounded)."""
    blobs = app[BLOBS]
    temps = blobs.remove_stale()
    rows, removed = await releases_service.remove_unused_uploads(app[POOL], blobs, limit=CLEANUP_BATCH)
    if rows or removed or temps:
        log.info("upload cleanup: %d expired uploads, %d blobs, %d temporary files removed", rows, removed, temps)


async def housekeeping(app: web.Application):
    """cleanup_ctx: `clean_up` at start and every CLEANUP_INTERVAL seconds."""
    async def loop():
        while True:
            try:
                await clean_up(app)
            except Exception:
                log.exception("upload cleanup failed; retrying in %.0f s", CLEANUP_INTERVAL)
            await asyncio.sleep(CLEANUP_INTERVAL)

    task = asyncio.create_task(loop())
    yield
    await cancel_and_wait(task)


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
