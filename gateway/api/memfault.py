"""Memfault device API: GET /api/v0/releases/latest and /latest/url.

A thin adapter: authenticate the project key against the mirror, validate the query, ask the
project view for a decision, render (cached) bytes, and queue a check-in. No database I/O.
"""
from __future__ import annotations

import time

import orjson
from aiohttp import web

from gateway.appkeys import DEVICE, DeviceContext
from gateway.crypto import manifests
from gateway.http.client_ip import client_address
from gateway.http.errors import add_route, error_response
from gateway.http.query import query_params
from gateway.http.rawresponse import Head, answer
from gateway.memory.auth_guard import AUTH_FAILURES, FailureLimits
from gateway.memory.mirror import SERIAL_RE_TEXT as SERIAL_RE
from gateway.memory.mirror import PayloadView, ProjectView, ReleaseView
from gateway.metrics import METRICS

_NO_STORE = "no-store"
_MAX_VERSION = 255
# answer heads built once (rawresponse): the URL's, and per (status, reason) the JSON (200) and
# the empty (204) ones; reasons are a fixed handful
_URL_HEAD = Head(200, {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": _NO_STORE})
_HEADS: dict[tuple[int, str], Head] = {}


def _head(status: int, reason: str) -> Head:
    head = _HEADS.get((status, reason))
    if head is None:
        headers = {"Content-Type": "application/json"} if status == 200 else {}
        head = _HEADS[(status, reason)] = Head(status, {**headers, "Cache-Control": _NO_STORE,
                                                        "memfault-reason": reason})
    return head


def _bad(message: str) -> web.Response:
    return error_response(400, message, "invalid_request")


def release_body(rel: ReleaseView, pl: PayloadView, url: str, reason: str, signature: dict | None = None) -> bytes:
    """The bare Release object of /latest with every field clients rely on."""
    return orjson.dumps({
        "id": rel.id,
        "created_date": rel.created_at,
        "updated_date": rel.updated_at,
        "version": rel.version,
        "display_name": rel.version,
        "notes": rel.notes or "",
        "revision": rel.revision or "",
        "min_version": "",
        "must_pass_through": rel.must_pass_through,
        "is_delta": rel.from_version is not None,
        "delta_from": rel.from_version,
        "is_forced": None,
        "reason": reason,
        "extra_info": rel.extra_info,
        "count_devices": 0,
        "artifacts": [{
            "id": pl.id,
            "created_date": pl.created_at,
            "updated_date": pl.created_at,
            "type": "firmware",
            "hardware_version": pl.hardware_version,
            "filename": pl.filename,
            "file_size": pl.size,
            "url": url,
            "md5": pl.md5,
            "sha1": pl.sha1,
            "sha256": pl.sha256,
            "build_id": "",
            "extra_info": pl.extra_info,
        }],
        **({"signature": signature} if signature else {}),
    })


async def _poll(request: web.Request, as_url: bool) -> web.Response:
    key = request.headers.get("Memfault-Project-Key")
    ctx = request.app[DEVICE]
    mirror = ctx.mirror
    # keys are ASCII; anything else (header bytes that are not UTF-8, too) cannot match one
    info = mirror.key_info(key) if key else None
    if info is None:
        return _refused(request)
    project: ProjectView | None = mirror.projects.get(info.project_id)
    if project is None:  # a key created a moment before its project reached this process
        return error_response(503, "project is loading; retry", "unavailable", {"Retry-After": "1"})
    q = query_params(request)
    serial = q.get("device_serial") or q.get("device_id")
    hw = q.get("hardware_version")
    sw = q.get("software_type")
    current = q.get("current_version") or None
    if not serial:
        return _bad("device_serial is required")
    if not SERIAL_RE.match(serial):
        return _bad("device_serial must match ^[-a-zA-Z0-9_]+$ (at most 128 characters)")
    if not hw:
        return _bad("hardware_version is required")
    if not sw:
        return _bad("software_type is required")
    if current is not None and (len(current) > _MAX_VERSION or not current.isprintable()):
        # it is written to the database with the check-in: refuse it here, not in the batch
        return _bad(f"current_version must be at most {_MAX_VERSION} printable characters")
    known_hw = hw in project.hardware_versions
    if not known_hw and (len(hw) > _MAX_VERSION or not hw.isprintable()):
        # a known hardware version is valid: only an unknown one (recorded with the check-in) is checked
        return _bad(f"hardware_version must be at most {_MAX_VERSION} printable characters")
    if sw not in project.software_types:
        return _bad(f"software_type {sw!r} is not known to this project")

    if project.poll_limit and not ctx.limiter.allow((project.id, serial), project.poll_limit, time.time()):
        METRICS.inc("ota_gateway_polls", ("memfault", "rate-limited"))
        return answer(request, _head(204, "rate-limited"))
    checkins = ctx.checkins
    checkins.add(project.id, serial, hw, sw, current, "memfault")
    if known_hw:
        decision, _dev = project.decide(serial, hw, sw, current, info.cohort_override)
        reason = decision.reason
        rel = project.releases.get(decision.release_id) if decision.release_id is not None else None
    else:
        # no release has a payload for hardware the project has never seen: for a device that is
        # "no update" (Memfault's 400 is logged as an error by its firmware SDK)
        reason, rel = "unknown_hardware_version", None
    METRICS.inc("ota_gateway_polls", ("memfault", reason))
    pl = rel.payloads.get(hw) if rel else None
    if pl is None:
        resp = answer(request, _head(204, reason))
    else:
        resp = _render(request, ctx, project, rel, pl, reason, as_url)
    if not checkins.accepting:
        await checkins.room()
    return resp


def _render(request: web.Request, ctx: DeviceContext, project: ProjectView, rel: ReleaseView, pl: PayloadView,
            reason: str, as_url: bool) -> web.StreamResponse:
    """Answer bytes are cached per payload (and reason) until the URL's expiry bucket moves."""
    signer = ctx.signer
    exp = signer.expiry()
    ckey = "url" if as_url else reason
    hit = pl.cache.get(ckey)
    if hit is None or hit[0] != exp:
        url = signer.sign(pl.url_path, exp)
        hit = (exp, url.encode() if as_url else release_body(rel, pl, url, reason,
                                                              manifests.signature(project, rel, pl)))
        pl.cache[ckey] = hit
    if as_url:
        return answer(request, _URL_HEAD, hit[1])
    return answer(request, _head(200, reason), hit[1])


def _refused(request: web.Request) -> web.Response:
    """403 for a missing or unknown project key (from memory, no database), counted against the
    source: past its limit of failures, 429 with Retry-After (memory/auth_guard)."""
    retry = request.app[AUTH_FAILURES].failed(client_address(request))
    if retry is None:
        return error_response(403, "Memfault-Project-Key is missing or invalid", "forbidden")
    return error_response(429, "too many failed authentications from this address", "rate_limited",
                          {"Retry-After": str(retry)})


async def latest(request: web.Request) -> web.Response:
    """GET /api/v0/releases/latest — the release this device should install next (JSON)."""
    return await _poll(request, as_url=False)


async def latest_url(request: web.Request) -> web.Response:
    """GET /api/v0/releases/latest/url — just its signed download URL (text/plain)."""
    return await _poll(request, as_url=True)


LATEST = "/api/v0/releases/latest"
LATEST_URL = LATEST + "/url"
POLL_PATHS = (LATEST_URL, LATEST)


def setup(app: web.Application) -> None:
    app[AUTH_FAILURES] = FailureLimits()  # the device routes' failed authentications (DDI's too)
    add_route(app, "GET", LATEST, latest)
    add_route(app, "GET", LATEST_URL, latest_url)
