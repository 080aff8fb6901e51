"""hawkBit DDI device API (specs/ddi.md), served at `/{tenant}/controller/v1/{controllerId}` and
at Memfault's `/api/v0/hawkbit/{tenant}/controller/v1/{controllerId}`.

controllerId is the device serial. `GatewayToken <project key>` names the project (the tenant is
then ignored, so Memfault's fixed `default` works) and may act as any serial; `TargetToken
<device token>` is checked against the device of the tenant (= project slug). What a device gets
next is the Memfault API's answer (`ProjectView.decide`); an offer becomes an action whose
feedback is written synchronously. A steady-state base poll touches only memory: the mirror and
the per-device cache of `ddi_state`.
"""
from __future__ import annotations

import hmac
import json
import time
import zlib
from urllib.parse import quote

import orjson
from aiohttp import web

from gateway.memory import ddi_shared
from gateway.store import ddi as ddi_store
from gateway.crypto import manifests
from gateway.appkeys import DEVICE, MIRROR, POOL, SETTINGS, SIGNER
from gateway.api.artifacts import BLOBS
from gateway.memory.ddi_loader import DDI_LOADER, StateLoader
from gateway.memory.ddi_cache import DDI_CACHE, DeviceCache
from gateway.domain.ddi_actions import ActionView
from gateway.http.delivery import send_blob
from gateway.http.errors import DB_UNAVAILABLE, add_route, error_response
from gateway.domain.errors import ApiError, BadRequest, NotFound
from gateway.metrics import METRICS
from gateway.http.rawresponse import Head, answer
from gateway.memory.mirror import SERIAL_RE_TEXT as SERIAL_RE
from gateway.memory.mirror import PayloadView, ReleaseView
from gateway.crypto.tokens import hash_token
from gateway.store import db as db_store
from gateway.domain.ddi_actions import (HAWKBIT_STATUS, Caller, effective_identity, parse_feedback, plan,
                                        transition)
from gateway.memory.ddi_loader import device_state

MEMFAULT_ROOT = "/api/v0/hawkbit"
BASE = "/{tenant}/controller/v1/{controllerId}"

HARDWARE_KEYS = ("memfault__hardware_version", "hardware_version")
SOFTWARE_TYPE_KEYS = ("memfault__software_type", "software_type")
VERSION_KEYS = ("memfault__current_version", "current_version", "sw_version")


# -- authentication and per-device state ---------------------------------------------------------


def _gateway_key(mirror, header: str):
    """The project key of a `GatewayToken` Authorization header (from memory), or None."""
    return mirror.key_info(header[13:].strip()) if header.startswith("GatewayToken ") else None


async def authenticate(request: web.Request) -> Caller | None:
    """The calling device, or None when the Authorization header does not authenticate it."""
    header = request.headers.get("Authorization", "")
    mirror = request.app[DEVICE].mirror
    token_hash = None
    if not header.isascii():  # tokens are ASCII; other bytes would not even hash
        return None
    if header.startswith("GatewayToken "):
        info = _gateway_key(mirror, header)
        if info is None:
            return None
        project, override = mirror.projects.get(info.project_id), info.cohort_override
    elif header.startswith("TargetToken "):
        token_hash = hash_token(header[12:].strip())
        project, override = mirror.by_slug.get(request.match_info["tenant"]), None
    else:
        return None
    if project is None:
        return None
    serial = request.match_info["controllerId"]
    if not SERIAL_RE.match(serial):
        raise BadRequest("controllerId must match ^[-a-zA-Z0-9_]+$ (at most 128 characters)")
    state = await device_state(request.app, project, serial)
    if token_hash is not None and not (state.token_hash and hmac.compare_digest(state.token_hash, token_hash)):
        return None
    return Caller(project, serial, override, state)


def _device_route(handler):
    """Authenticate first; hawkBit answers a failed authentication with a bare 401."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        caller = await authenticate(request)
        if caller is None:
            return web.Response(status=401)
        return await handler(request, caller)

    wrapped.__name__, wrapped.__doc__ = handler.__name__, handler.__doc__
    return wrapped


async def _durable(request: web.Request, caller: Caller, tx, *, notify: bool = True):
    """Run `tx(conn)` in a transaction, then drop the cached state here and (by NOTIFY) elsewhere."""
    cache = request.app[DDI_CACHE]
    async with request.app[POOL].acquire() as conn, conn.transaction():
        result = await tx(conn)
        if notify:
            await db_store.notify(conn, cache.message(*caller.key))
    cache.invalidate(caller.key)
    return result


# -- what to offer -------------------------------------------------------------------------------------


async def _create_action(request: web.Request, caller: Caller, rel: ReleaseView, pl: PayloadView,
                         reason: str) -> None:
    async def tx(conn):
        device_id = caller.state.device_id or await ddi_store.ensure_device(
            conn, caller.project.id, caller.serial, caller.state.hardware_version)
        await ddi_store.create_action(conn, caller.project.id, device_id, release_id=rel.id, payload_id=pl.id,
                                      software_type=rel.software_type, version=rel.version,
                                      from_version=rel.from_version, reason=reason)
    await _durable(request, caller, tx)


def _cohort(caller: Caller):
    project = caller.project
    dev = project.devices.get(caller.serial)
    cohort_id = caller.cohort_override or (dev.cohort_id if dev else project.default_cohort_id)
    return project.cohorts.get(cohort_id) or project.cohorts[project.default_cohort_id]


async def _resolve(request: web.Request, caller: Caller) -> tuple[str | None, ActionView | None, str]:
    """(link kind, action, reason) for a poll, doing the durable writes a change needs."""
    offer = plan(caller)
    if offer.what == "cancel":
        await _durable(request, caller, lambda conn: ddi_store.mark_canceling(conn, offer.action.id))
        return "cancelAction", offer.action, offer.reason
    if offer.what == "create":
        await _create_action(request, caller, offer.release, offer.payload, offer.reason)
        # another process may have created one first: whatever the database now holds wins
        caller.state = await device_state(request.app, caller.project, caller.serial)
        offer = plan(caller)
        if not offer.shows:
            # as before: a second look that finds nothing to show names what it found
            return None, None, offer.what or offer.reason
    if offer.shows:
        return offer.what, offer.action, offer.reason
    return None, None, offer.reason


# -- rendering -------------------------------------------------------------------------------------

def _base_url(request: web.Request, caller: Caller) -> str:
    root = MEMFAULT_ROOT if request.match_info.route.resource.canonical.startswith(MEMFAULT_ROOT) else ""
    tenant = quote(request.match_info["tenant"], safe="")
    return f"{root}/{tenant}/controller/v1/{caller.serial}"


def _etag(body: bytes) -> str:
    return f'"{zlib.crc32(body):08x}"'


def _json(request: web.Request, obj) -> web.Response:
    """A DDI JSON answer with hawkBit's shallow ETag (304 on a matching If-None-Match)."""
    body = orjson.dumps(obj)
    etag = _etag(body)
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={"ETag": etag})
    return web.Response(body=body, content_type="application/json", headers={"ETag": etag})


def jittered(interval: int, serial: str) -> int:
    """The polling interval moved by a per-device amount within +-10 %, the same on every poll,
    so a fleet started together (or back after an outage) does not poll in lock-step."""
    spread = interval // 10
    return interval + zlib.crc32(serial.encode()) % (2 * spread + 1) - spread if spread else interval


def _sleep(seconds: int) -> str:
    """HH:MM:SS; SWUpdate parses it with strptime, so hours stay below 24 and 0 is avoided."""
    s = min(max(int(seconds), 1), 24 * 3600 - 1)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def _c(action_id: int, update_type: str) -> int:
    """hawkBit's `c`: a signed 32-bit value that changes when the offer's urgency does."""
    v = zlib.crc32(f"{action_id}:{update_type}".encode())
    return v - (1 << 32) if v >= 1 << 31 else v


def _artifact_links(request: web.Request, caller: Caller, pl: PayloadView) -> dict:
    """Signed hrefs (they work without a header too); `download` when served over TLS."""
    signer = request.app[SIGNER]
    path = f"{_base_url(request, caller)}/softwaremodules/{pl.id}/artifacts/{quote(pl.filename, safe='')}"
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


async def _history(request: web.Request, action_id: int, status: str) -> dict | None:
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


def _action_id(request: web.Request) -> int:
    raw = request.match_info["actionId"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise BadRequest(f"actionId must be a decimal integer, not {raw[:40]!r}")
    return int(raw)


# -- device endpoints ------------------------------------------------------------------------------

@_device_route
async def base_poll(request: web.Request, caller: Caller) -> web.Response:
    """GET {base}: polling interval and links to what the device should do next."""
    project = caller.project
    ctx = request.app[DEVICE]
    if project.poll_limit and not ctx.limiter.allow((project.id, caller.serial), project.poll_limit, time.time()):
        METRICS.inc("ota_gateway_polls", ("ddi", "rate-limited"))
        retry = str(60 - int(time.time()) % 60)  # the limiter's window turns on the minute
        return error_response(429, f"device {caller.serial} polls more than {project.poll_limit} times a minute",
                              "rate_limited", {"Retry-After": retry})
    state = caller.state
    # the answer is a function of the device state, the project view, the device's exception
    # entry and the URL it came in on: a device polling again unchanged gets the same bytes
    match = request.match_info
    inputs = (project, project.devices.get(caller.serial), caller.cohort_override, match.route, match["tenant"])
    hit = state.rendered[0] if state.rendered else None
    if hit is None or hit.inputs[0] is not project or hit.inputs != inputs:
        # kept on the state it was rendered from (a poll that wrote reloaded it): any change to a
        # device's state replaces that object
        body, etag, reason = await _render_base(request, caller)
        state = caller.state
        hit = _Rendered(inputs, body, etag, reason, effective_identity(project, state)[1] or "")
        state.rendered[:] = [hit]
    checkins = ctx.checkins
    checkins.add(project.id, caller.serial, state.hardware_version, hit.sw, None, "ddi")
    METRICS.inc("ota_gateway_polls", ("ddi", hit.reason))
    if request.headers.get("If-None-Match") == hit.etag:
        resp = answer(request, hit.unchanged)
    else:
        resp = answer(request, hit.head, hit.body)
    if not checkins.accepting:
        await checkins.room()
    return resp


class _Rendered:
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


async def _render_base(request: web.Request, caller: Caller) -> tuple[bytes, str, str]:
    """(body, ETag, reason) of a base poll, doing the durable writes a change needs."""
    kind, action, reason = await _resolve(request, caller)
    project, state = caller.project, caller.state
    cohort = _cohort(caller)
    base = request.app[SETTINGS].effective_public_url + _base_url(request, caller)
    links = {}
    if kind == "deploymentBase":
        links[kind] = {"href": f"{base}/deploymentBase/{action.id}?c={_c(action.id, cohort['ddi_update_type'])}"}
    elif kind == "cancelAction":
        links[kind] = {"href": f"{base}/cancelAction/{action.id}"}
    sw = effective_identity(project, state)[1]
    installed = state.installed.get(sw) if sw else None
    if installed is not None:
        links["installedBase"] = {"href": f"{base}/installedBase/{installed[0]}"}
    if state.config_requested:  # asked again after an update; a device that never says more is not pestered
        links["configData"] = {"href": f"{base}/configData"}
    doc = {"config": {"polling": {"sleep": _sleep(jittered(cohort["ddi_polling_interval"], caller.serial))}}}
    if links:
        doc["_links"] = links
    body = orjson.dumps(doc)
    return body, _etag(body), reason


def _degrades(handler):
    """While the database is unreachable, a base poll whose device state is not cached here (or
    whose new offer would need a durable write) answers "nothing now, ask again soon" instead of
    503, when the gateway token alone authenticates the project from memory. Saying nothing is
    never wrong in DDI: the device polls again and gets the offer once the database is back."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except DB_UNAVAILABLE:
            mirror = request.app[MIRROR]
            info = _gateway_key(mirror, request.headers.get("Authorization", ""))
            project = mirror.projects.get(info.project_id) if info else None
            if project is None:
                raise
            METRICS.inc("ota_gateway_polls", ("ddi", "database_unavailable"))
            interval = project.cohorts[project.default_cohort_id]["ddi_polling_interval"]
            resp = _json(request, {"config": {"polling": {"sleep": _sleep(min(interval, 60))}}})
            resp.headers["ota-gateway-reason"] = "database_unavailable"
            return resp

    wrapped.__name__, wrapped.__doc__ = handler.__name__, handler.__doc__
    return wrapped


def _open_action(caller: Caller, action_id: int) -> ActionView | None:
    return next((a for a in caller.state.actions.values() if a.id == action_id), None)


@_device_route
async def deployment_base(request: web.Request, caller: Caller) -> web.Response:
    """GET {base}/deploymentBase/{actionId}: the update to install."""
    action_id = _action_id(request)
    action = _open_action(caller, action_id)
    if action is None or action.status != "open":
        raise NotFound(f"actionId {action_id} is not an open deployment of device {caller.serial}")
    rel = caller.project.releases.get(action.release_id)
    pl = caller.project.payloads.get(action.payload_id)
    if rel is None or pl is None:
        raise NotFound(f"actionId {action_id}: its release no longer exists")
    history = await _history(request, action_id, action.status)
    if not action.retrieved:  # once per action, so that operators see the device fetched it
        await _durable(request, caller, lambda conn: ddi_store.mark_retrieved(conn, action_id), notify=False)
    return _json(request, deployment_doc(request, caller, action_id, rel, pl, _cohort(caller)["ddi_update_type"],
                                         history))


@_device_route
async def installed_base(request: web.Request, caller: Caller) -> web.Response:
    """GET {base}/installedBase/{actionId}: a finished action's document (to download it again)."""
    action_id = _action_id(request)
    row = await ddi_store.device_action(request.app[POOL], caller.project.id, caller.serial, action_id)
    if row is None or row["status"] not in ("succeeded", "failed"):
        raise NotFound(f"actionId {action_id} is not a finished action of device {caller.serial}")
    rel = caller.project.releases.get(row["release_id"])
    pl = caller.project.payloads.get(row["payload_id"])
    if rel is None or pl is None:
        raise NotFound(f"actionId {action_id}: its release no longer exists")
    history = await _history(request, action_id, row["status"])
    return _json(request, deployment_doc(request, caller, action_id, rel, pl, _cohort(caller)["ddi_update_type"],
                                         history))


@_device_route
async def cancel_action(request: web.Request, caller: Caller) -> web.Response:
    """GET {base}/cancelAction/{actionId}: the server asks the device to stop an action."""
    action_id = _action_id(request)
    action = _open_action(caller, action_id)
    if action is None or action.status != "canceling":
        row = await ddi_store.device_action(request.app[POOL], caller.project.id, caller.serial, action_id)
        if row is None or row["status"] not in ("canceling", "canceled"):
            raise NotFound(f"actionId {action_id} is not being canceled on device {caller.serial}")
    return _json(request, {"id": str(action_id), "cancelAction": {"stopId": str(action_id)}})


def lenient_json(raw: bytes):
    """Parse a device's JSON; SWUpdate builds bodies with printf and may put raw newlines in strings."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw.decode("utf-8", "replace"), strict=False)
    except ValueError:
        raise BadRequest("request body is not valid JSON") from None


async def _feedback(request: web.Request, caller: Caller, kind: str) -> web.Response:
    action_id = _action_id(request)
    fb = parse_feedback(lenient_json(await request.read()))
    new_status, rejected = transition(kind, fb)

    async def tx(conn):
        row = await ddi_store.device_action(conn, caller.project.id, caller.serial, action_id, lock=True)
        if row is None:
            raise NotFound(f"actionId {action_id} is not an action of device {caller.serial}")
        if row["status"] not in ddi_store.OPEN:
            raise ApiError(f"actionId {action_id} is already closed ({row['status']})", status=410, type="gone")
        if kind == "cancel" and row["status"] != "canceling":
            raise ApiError(f"actionId {action_id} is not being canceled", status=405, type="not_cancelable")
        await ddi_store.add_feedback(conn, action_id, kind=kind, execution=fb.execution, finished=fb.finished,
                                     code=fb.code, progress=fb.progress, details=fb.details)
        if new_status is not None:
            await ddi_store.set_action_status(conn, action_id, new_status, cancel_rejected=rejected)
            if new_status == "succeeded":
                await ddi_store.record_version(conn, row["device_id"], row["software_type"], row["version"])
                await ddi_store.request_config(conn, row["device_id"])

    if new_status is None:  # progress only: durable, but nothing a poll would answer differently
        async with request.app[POOL].acquire() as conn, conn.transaction():
            await tx(conn)
    else:
        await _durable(request, caller, tx)
    return web.Response(status=200)


@_device_route
async def deployment_feedback(request: web.Request, caller: Caller) -> web.Response:
    """POST {base}/deploymentBase/{actionId}/feedback: progress or result; 200 with an empty body."""
    return await _feedback(request, caller, "deployment")


@_device_route
async def cancel_feedback(request: web.Request, caller: Caller) -> web.Response:
    """POST {base}/cancelAction/{actionId}/feedback: the device's answer to a cancel."""
    return await _feedback(request, caller, "cancel")


def _first(data: dict[str, str], keys: tuple[str, ...]) -> str | None:
    return next((data[k] for k in keys if data.get(k)), None)


@_device_route
async def config_data(request: web.Request, caller: Caller) -> web.Response:
    """PUT {base}/configData: device attributes; the memfault__* ones (and aliases) set the
    hardware version (once), software type and current version. 200 with an empty body."""
    body = lenient_json(await request.read())
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    data = body.get("data")
    if not isinstance(data, dict) or not data:
        raise BadRequest("data is required: a non-empty object of string attributes")
    for k, v in data.items():
        if not isinstance(v, str) or len(k) > 128 or len(v) > 128 or "\x00" in k or "\x00" in v:
            raise BadRequest(f"data.{k[:64]} must be a string of at most 128 characters (key too)")
    mode = body.get("mode") or "merge"
    if mode not in ("merge", "replace", "remove"):
        raise BadRequest("mode must be merge, replace or remove")
    reported = mode != "remove"
    hw = _first(data, HARDWARE_KEYS) if reported else None
    sw = _first(data, SOFTWARE_TYPE_KEYS) if reported else None
    current = _first(data, VERSION_KEYS) if reported else None
    software_type = sw or effective_identity(caller.project, caller.state)[1]

    async def tx(conn):
        device_id = caller.state.device_id or await ddi_store.ensure_device(conn, caller.project.id,
                                                                            caller.serial, None)
        await ddi_store.save_config(conn, device_id, mode=mode, data=data, hardware_version=hw, software_type=sw)
        if current and software_type:
            await ddi_store.record_version(conn, device_id, software_type, current)
    await _durable(request, caller, tx)
    return web.Response(status=200)


@_device_route
async def artifact_list(request: web.Request, caller: Caller) -> web.Response:
    """GET {base}/softwaremodules/{id}/artifacts: the module's artifacts (one payload here)."""
    raw_id = request.match_info["softwareModuleId"]
    pl = caller.project.payloads.get(int(raw_id)) if raw_id.isascii() and raw_id.isdigit() else None
    if pl is None or not caller.state.payload_allowed(pl.id):
        raise NotFound(f"softwareModuleId {raw_id[:40]!r} is not assigned to this device")
    return _json(request, [artifact_json(request, caller, pl)])


async def artifact(request: web.Request) -> web.StreamResponse:
    """GET/HEAD {base}/softwaremodules/{id}/artifacts/{fileName}[.MD5SUM]: with the device's
    Authorization header, or with the signed URL the deployment document handed out."""
    signed = request.app[SIGNER].verify(request.rel_url.raw_path, request.query.get("e"), request.query.get("s"))
    raw_id = request.match_info["softwareModuleId"]
    if not (raw_id.isascii() and raw_id.isdigit()):
        raise NotFound(f"softwareModuleId {raw_id[:40]!r} not found")
    module_id = int(raw_id)
    if signed:
        pl = next((p.payloads[module_id] for p in request.app[MIRROR].projects.values()
                   if module_id in p.payloads), None)
    else:
        caller = await authenticate(request)
        if caller is None:
            return web.Response(status=401)
        pl = caller.project.payloads.get(module_id)
        if pl is not None and not caller.state.payload_allowed(module_id):
            pl = None
    if pl is None:
        raise NotFound(f"softwareModuleId {module_id} is not assigned to this device")
    name = request.match_info["fileName"]
    disposition = f"attachment;filename={quote(name, safe='._-+ ')}"
    if name == pl.filename + ".MD5SUM" and name != pl.filename:
        return web.Response(text=f"{pl.md5}  {pl.filename}", content_type="text/plain",
                            headers={"Content-Disposition": disposition})
    if name != pl.filename:
        raise NotFound(f"fileName {name[:64]!r} is not an artifact of softwareModuleId {module_id}")
    return await send_blob(request, request.app[BLOBS].path(pl.sha256), pl.sha256,
                           headers={"Content-Disposition": disposition, "X-Content-Type-Options": "nosniff"})


async def _attach_cache(app: web.Application) -> None:
    app[MIRROR].hooks.append(app[DDI_CACHE].on_message)
    METRICS.gauge_fns["ota_gateway_ddi_cached_devices"] = app[DDI_CACHE].__len__
    METRICS.gauge_fns["ota_gateway_ddi_shared_devices"] = app[DDI_CACHE].shared_len


def setup(app: web.Application) -> None:
    app[DDI_CACHE] = DeviceCache(app[SETTINGS].ddi_cache_size, ddi_shared.table(app[SETTINGS].ddi_shared_size))
    app[DDI_LOADER] = StateLoader(lambda: app[POOL])
    app.on_startup.append(_attach_cache)  # after the cleanup contexts: the mirror exists by then
    for root in ("", MEMFAULT_ROOT):
        b = root + BASE
        add_route(app, "GET", b, _degrades(base_poll))
        add_route(app, "GET", b + "/deploymentBase/{actionId}", deployment_base)
        add_route(app, "POST", b + "/deploymentBase/{actionId}/feedback", deployment_feedback)
        add_route(app, "GET", b + "/cancelAction/{actionId}", cancel_action)
        add_route(app, "POST", b + "/cancelAction/{actionId}/feedback", cancel_feedback)
        add_route(app, "PUT", b + "/configData", config_data)
        add_route(app, "GET", b + "/installedBase/{actionId}", installed_base)
        add_route(app, "GET", b + "/softwaremodules/{softwareModuleId}/artifacts", artifact_list)
        add_route(app, "GET", b + "/softwaremodules/{softwareModuleId}/artifacts/{fileName}", artifact)
