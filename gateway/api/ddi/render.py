"""Rendering DDI answers: links, polling times, deployment documents, action history, ETags."""
from __future__ import annotations

import zlib
from urllib.parse import quote

import orjson
from aiohttp import web

from gateway.api.ddi.device import MEMFAULT_ROOT
from gateway.appkeys import POOL, SIGNER
from gateway.crypto import manifests
from gateway.domain.ddi_actions import HAWKBIT_STATUS, Caller
from gateway.domain.errors import BadRequest
from gateway.http.rawresponse import Head
from gateway.memory.mirror import PayloadView, ReleaseView
from gateway.store import ddi as ddi_store


def base_url(request: web.Request, caller: Caller) -> str:
    root = MEMFAULT_ROOT if request.match_info.route.resource.canonical.startswith(MEMFAULT_ROOT) else ""
    tenant = quote(request.match_info["tenant"], safe="")
    return f"{root}/{tenant}/controller/v1/{caller.serial}"


def etag_of(body: bytes) -> str:
    return f'"{zlib.crc32(body):08x}"'


def json_answer(request: web.Request, obj) -> web.Response:
    """A DDI JSON answer with hawkBit's shallow ETag (304 on a matching If-None-Match)."""
    body = orjson.dumps(obj)
    etag = etag_of(body)
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={"ETag": etag})
    return web.Response(body=body, content_type="application/json", headers={"ETag": etag})


def jittered(interval: int, serial: str) -> int:
    """The polling interval moved by a per-device amount within +-10 %, the same on every poll,
    so a fleet started together (or back after an outage) does not poll in lock-step."""
    spread = interval // 10
    return interval + zlib.crc32(serial.encode()) % (2 * spread + 1) - spread if spread else interval


def sleep_text(seconds: int) -> str:
    """HH:MM:SS; SWUpdate parses it with strptime, so hours stay below 24 and 0 is avoided."""
    s = min(max(int(seconds), 1), 24 * 3600 - 1)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def cache_buster(action_id: int, update_type: str) -> int:
    """hawkBit's `c`: a signed 32-bit value that changes when the offer's urgency does."""
    v = zlib.crc32(f"{action_id}:{update_type}".encode())
    return v - (1 << 32) if v >= 1 << 31 else v


def _artifact_links(request: web.Request, caller: Caller, pl: PayloadView) -> dict:
    """Signed hrefs (they work without a header too); `download` when served over TLS."""
    signer = request.app[SIGNER]
    path = f"{base_url(request, caller)}/softwaremodules/{pl.id}/artifacts/{quote(pl.filename, safe='')}"
    exp = signer.expiry()
    suffix = "" if signer.public_url.startswith("https:") else "-http"
    return {f"download{suffix}": {"href": signer.sign(path, exp)},
            f"md5sum{suffix}": {"href": signer.sign(path + ".MD5SUM", exp)}}


def artifact_json(request: web.Request, caller: Caller, pl: PayloadView) -> dict:
    return {"filename": pl.filename, "hashes": {"sha1": pl.sha1, "md5": pl.md5, "sha256": pl.sha256},
            "size": pl.size, "_links": _artifact_links(request, caller, pl)}


def deployment_doc(request: web.Request, caller: Caller, action_id: int, rel: ReleaseView, pl: PayloadView,
                   update_type: str, history: dict | None = None, key: str = "deployment") -> dict:
    """The deploymentBase (or installedBase) document of one action."""
    chunk = {"part": "os", "version": rel.version, "name": rel.software_type,
             "artifacts": [artifact_json(request, caller, pl)]}
    meta = {**(rel.extra_info or {}), **(pl.extra_info or {})}
    signed = manifests.signature(caller.project, rel, pl)
    if signed:  # DDI has no signature field: the manifest and its signature travel as metadata
        meta.update({"ota_gateway_manifest": signed["manifest"], "ota_gateway_signature": signed["value"],
                     "ota_gateway_key_id": signed["key_id"]})
    if meta:
        chunk["metadata"] = [{"key": k, "value": str(v)} for k, v in meta.items()]
    doc = {"id": str(action_id), key: {"download": update_type, "update": update_type, "chunks": [chunk]}}
    if history is not None:
        doc["actionHistory"] = history
    return doc


async def action_history(request: web.Request, action_id: int, status: str) -> dict | None:
    """`?actionHistory=N`: the N newest device messages (N < 0 or >= 100 means 100; 0 none)."""
    raw = request.query.get("actionHistory", "0")
    try:
        n = int(raw)
    except ValueError:
        raise BadRequest("actionHistory must be an integer") from None
    if n == 0:
        return None
    n = 100 if n < 0 or n >= 100 else n
    return {"status": HAWKBIT_STATUS[status],
            "messages": await ddi_store.device_messages(request.app[POOL], action_id, n)}


def action_id_of(request: web.Request) -> int:
    raw = request.match_info["actionId"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise BadRequest(f"actionId must be a decimal integer, not {raw[:40]!r}")
    return int(raw)


class Rendered:
    """A base-poll answer and what it was rendered from; its heads are built once (the 304 one on
    first use: many devices never send If-None-Match, and every cached device holds one of these)."""

    __slots__ = ("inputs", "body", "etag", "reason", "head", "_unchanged", "sw")

    def __init__(self, inputs: tuple, body: bytes, etag: str, reason: str, sw: str):
        self.inputs, self.body, self.etag, self.reason, self.sw = inputs, body, etag, reason, sw
        self.head = Head(200, {"Content-Type": "application/json", "ETag": etag, "ota-gateway-reason": reason})
        self._unchanged: Head | None = None

    @property
    def unchanged(self) -> Head:
        if self._unchanged is None:
            self._unchanged = Head(304, {"ETag": self.etag, "ota-gateway-reason": self.reason})
        return self._unchanged
