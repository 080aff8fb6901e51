"""Management REST API, shaped like Memfault's so memfault-cli works unmodified: projects,
uploads, releases and deployments (activations).

Everything lives under /api/v0/organizations/{org}/projects/{project} with a {"data": ...}
envelope. Writes that can change what a device gets rebuild the resolution cache inside their
own transaction (resolution_store.rebuild_resolution), which notifies every gateway process.
"""
from __future__ import annotations

from aiohttp import web

from gateway.api.artifacts import new_upload_token
from gateway.api.mgmt.auth import context_for
from gateway.api.mgmt.common import P, body_json, data
from gateway.appkeys import SETTINGS, SIGNER
from gateway.domain.errors import BadRequest
from gateway.domain.fields import need_str
from gateway.domain.versions import check_version
from gateway.http.errors import add_route
from gateway.services import projects, releases

# -- projects, software types ----------------------------------------------------------------

async def get_project(request: web.Request) -> web.Response:
    return data(projects.project_json((await context_for(request)).project))


async def patch_project(request: web.Request) -> web.Response:
    """PATCH P: project settings (strict_semver, ddi_software_type, ddi_hardware_version,
    poll_limit_per_minute, ddi_gateway_token)."""
    ctx = await context_for(request)
    ctx.ident.require("manager")
    body = await body_json(request, {"strict_semver": None, "ddi_software_type": None,
                                     "ddi_hardware_version": None, "poll_limit_per_minute": None,
                                     "ddi_gateway_token": None})
    changes: dict = {}
    for key in ("strict_semver", "ddi_gateway_token"):
        if key in body:
            if not isinstance(body[key], bool):
                raise BadRequest(f"{key} must be a boolean")
            changes[key] = body[key]
    for key in ("ddi_software_type", "ddi_hardware_version"):
        if key in body:
            changes[key] = need_str(body, key, required=False)
    if "poll_limit_per_minute" in body:
        v = body["poll_limit_per_minute"]
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise BadRequest("poll_limit_per_minute must be a positive integer or null")
        changes["poll_limit_per_minute"] = v
    change = await projects.update_project(ctx, changes)
    if change.pending:
        return data(change.data, status=202)
    return await get_project(request)


async def get_signing_key(request: web.Request) -> web.Response:
    """GET P/signing-key: the public key release manifests are signed with."""
    return data(await projects.get_signing_key(await context_for(request)))


async def create_signing_key(request: web.Request) -> web.Response:
    """POST P/signing-key: create (or rotate) the project's Ed25519 manifest key. The private key
    stays in the database; only the public key is ever returned."""
    ctx = await context_for(request)
    ctx.ident.require("manager")
    await body_json(request, {})
    return data(await projects.rotate_signing_key(ctx), status=201)


async def delete_signing_key(request: web.Request) -> web.Response:
    ctx = await context_for(request)
    ctx.ident.require("manager")
    await body_json(request, {})
    await projects.delete_signing_key(ctx)
    return web.Response(status=204)


async def software_type_values(request: web.Request) -> web.Response:
    return data([{"name": name} for name in await releases.software_types(await context_for(request))])


async def software_version(request: web.Request) -> web.Response:
    ctx = await context_for(request)
    return data(await releases.software_version(ctx, request.match_info["type"], request.match_info["version"]))


# -- uploads and releases -----------------------------------------------------------------------

async def create_upload(request: web.Request) -> web.Response:
    ctx = await context_for(request)
    # memfault-cli 1.x sends the kind of file (OTA_PAYLOAD, ...) and its size
    body = await body_json(request, {"kind": None, "size": None})
    settings = request.app[SETTINGS]
    size = body.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise BadRequest("size must be a non-negative integer")
    if size is not None and size > settings.max_upload_size:
        raise BadRequest(f"Uploaded file is too big: the limit is {settings.max_upload_size} bytes",
                         type="file_too_big")
    token = new_upload_token()
    await releases.create_upload(ctx, token, settings.upload_ttl, max_size=size)
    signer = request.app[SIGNER]
    url = signer.sign(f"/api/v0/uploads/{token}", signer.expiry() - signer.ttl + settings.upload_ttl)
    return data({"upload_url": url, "token": token})


def _version_field(sv: dict, strict: bool) -> tuple[str, str | None]:
    """`software_version.version` is a string (full) or [from, to] (delta)."""
    v = sv.get("version")
    if isinstance(v, list):
        if len(v) != 2 or not all(isinstance(x, str) and x for x in v):
            raise BadRequest("software_version.version must be a string or a [from, to] pair of strings")
        frm, to = v
        if frm == to:
            raise BadRequest("software_version.version: delta from and to versions must differ")
    elif isinstance(v, str) and v:
        frm, to = None, v
    else:
        raise BadRequest("software_version.version is required")
    for label, x in (("software_version.version", to), ("software_version.version (delta from)", frm)):
        if x is not None:
            try:
                check_version(x, strict)
            except ValueError as e:
                raise BadRequest(f"{label}: {e}") from None
    return to, frm


# What memfault-cli 1.0-1.12 sends to releases/ota_payload (upload-ota-payload and
# upload-zchunk-ota-payload; component versions since 1.10); anything else is refused.
_OTA_PAYLOAD_FIELDS = {
    "file": {"token": None, "md5": None, "name": None},
    "software_version": {"version": None, "software_type": None, "revision": None},
    "hardware_version": None, "must_pass_through": None, "notes": None, "extra_info": None,
    "firmware_type": None, "component_version": None, "component_base_version": None,
}


async def ota_payload(request: web.Request) -> web.Response:
    """POST P/releases/ota_payload: attach an uploaded file to a (new) release."""
    ctx = await context_for(request)
    body = await body_json(request, _OTA_PAYLOAD_FIELDS)
    file = body.get("file")
    if not isinstance(file, dict):
        raise BadRequest("file is required (an object with token, md5 and name)")
    token = need_str(file, "token", "file.token", charset=None)
    name = need_str(file, "name", "file.name", required=False, charset=None, max_len=255) or "payload.bin"
    # served back in download URLs and Content-Disposition-like places: no path of any OS
    if any(c in name for c in "/\\:") or name in (".", "..") or name.startswith("."):
        raise BadRequest("file.name must be a plain file name (no '/', '\\', ':' or leading '.')")
    sv = body.get("software_version")
    if not isinstance(sv, dict):
        raise BadRequest("software_version is required (an object with version and software_type)")
    version, from_version = _version_field(sv, ctx.project["strict_semver"])
    software_type = need_str(sv, "software_type", "software_version.software_type")
    revision = sv.get("revision") or ""
    hw = need_str(body, "hardware_version")
    notes = body.get("notes") or ""
    mpt = body.get("must_pass_through", False)
    extra = body.get("extra_info")
    firmware_type = body.get("firmware_type") or "firmware"
    md5 = file.get("md5")
    if not isinstance(revision, str) or not isinstance(notes, str):
        raise BadRequest("software_version.revision and notes must be strings")
    if not isinstance(mpt, bool):
        raise BadRequest("must_pass_through must be a boolean")
    if mpt and from_version is not None:
        raise BadRequest("must_pass_through cannot be set on a delta release")
    if extra is not None and (not isinstance(extra, dict) or
                              not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items())):
        raise BadRequest("extra_info must be an object of string values")
    if not isinstance(firmware_type, str):
        raise BadRequest("firmware_type must be a string")
    if md5 is not None and not isinstance(md5, str):
        raise BadRequest("file.md5 must be a string")
    change = await releases.add_payload(ctx, {
        "token": token, "md5": md5, "name": name, "version": version, "from_version": from_version,
        "software_type": software_type, "revision": revision, "hardware_version": hw, "notes": notes,
        "must_pass_through": mpt, "extra_info": extra, "firmware_type": firmware_type})
    return data(change.data, status=202 if change.pending else 201 if change.created else 200)


async def list_releases(request: web.Request) -> web.Response:
    ctx = await context_for(request)
    q = request.query
    return data(await releases.list_releases(ctx, version=q.get("version"), software_type=q.get("software_type"),
                                             revision=q.get("revision"),
                                             hardware_version=q.get("hardware_version")))


async def get_release(request: web.Request) -> web.Response:
    ctx = await context_for(request)
    return data(await releases.get_release(ctx, request.match_info["release"]))


async def patch_release(request: web.Request) -> web.Response:
    """PATCH releases/{id|version}: notes, revision, extra_info (release-level string map)."""
    ctx = await context_for(request)
    body = await body_json(request, {"notes": None, "revision": None, "extra_info": None})
    changes: dict = {}
    for key in ("notes", "revision"):
        if key in body:
            if not isinstance(body[key], str):
                raise BadRequest(f"{key} must be a string")
            changes[key] = body[key]
    if "extra_info" in body:
        extra = body["extra_info"]
        if extra is not None and (not isinstance(extra, dict) or
                                  not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items())):
            raise BadRequest("extra_info must be an object of string values, or null")
        changes["extra_info"] = extra
    change = await releases.update_release(ctx, request.match_info["release"], changes)
    return data(change.data, status=202 if change.pending else 200)


async def delete_release(request: web.Request) -> web.Response:
    ctx = await context_for(request)
    await body_json(request, {})
    change = await releases.delete_release(ctx, request.match_info["release"])
    return data(change.data, status=202) if change.pending else web.Response(status=204)


def setup(app: web.Application) -> None:
    add_route(app, "GET", P, get_project)
    add_route(app, "PATCH", P, patch_project)
    add_route(app, "GET", P + "/signing-key", get_signing_key)
    add_route(app, "POST", P + "/signing-key", create_signing_key)
    add_route(app, "DELETE", P + "/signing-key", delete_signing_key)
    add_route(app, "GET", P + "/software_type_values", software_type_values)
    add_route(app, "GET", P + "/software_types/{type}/software_versions/{version}", software_version)
    add_route(app, "POST", P + "/upload", create_upload)
    add_route(app, "POST", P + "/releases/ota_payload", ota_payload)
    add_route(app, "GET", P + "/releases", list_releases)
    add_route(app, "GET", P + "/releases/{release}", get_release)
    add_route(app, "PATCH", P + "/releases/{release}", patch_release)
    add_route(app, "DELETE", P + "/releases/{release}", delete_release)
