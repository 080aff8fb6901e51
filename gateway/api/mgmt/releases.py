"""Management REST API, shaped like Memfault's so memfault-cli works unmodified: projects,
uploads, releases and deployments (activations).

Everything lives under /api/v0/organizations/{org}/projects/{project} with a {"data": ...}
envelope. Writes that can change what a device gets rebuild the resolution cache inside their
own transaction (resolution_store.rebuild_resolution), which notifies every gateway process.
"""
from __future__ import annotations

from aiohttp import web

from gateway.appkeys import POOL, SETTINGS, SIGNER
from gateway.api.artifacts import new_upload_token
from gateway.http.errors import add_route
from gateway.domain.errors import BadRequest, NotFound
from gateway.api.mgmt.auth import context_for, project_for
from gateway.api.mgmt.common import P, body_json, data, refresh
from gateway.domain.fields import iso, need_str
from gateway.services import projects, releases
from gateway.domain.versions import check_version
from gateway.store import db as db_store
from gateway.store import insight as insight_store
from gateway.store import projects as projects_store
from gateway.store import releases as releases_store


# -- projects, software types ----------------------------------------------------------------

async def get_project(request: web.Request) -> web.Response:
    _, p = await project_for(request)
    return data({"id": p["id"], "slug": p["slug"], "name": p["name"], "organization": {"slug": p["org_slug"]},
                 "strict_semver": p["strict_semver"], "ddi_tenant": p["slug"],
                 "ddi_software_type": p["ddi_software_type"], "ddi_hardware_version": p["ddi_hardware_version"],
                 "poll_limit_per_minute": p["poll_limit_per_minute"],
                 "created_date": iso(p["created_at"])})


async def patch_project(request: web.Request) -> web.Response:
    """PATCH P: project settings (strict_semver, ddi_software_type, ddi_hardware_version,
    poll_limit_per_minute)."""
    ctx = await context_for(request)
    ctx.ident.require("manager")
    body = await body_json(request, {"strict_semver": None, "ddi_software_type": None,
                                     "ddi_hardware_version": None, "poll_limit_per_minute": None})
    changes: dict = {}
    if "strict_semver" in body:
        if not isinstance(body["strict_semver"], bool):
            raise BadRequest("strict_semver must be a boolean")
        changes["strict_semver"] = body["strict_semver"]
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


def _signing_key_json(row) -> dict:
    from gateway.crypto import ed25519, manifests

    public = bytes(row["public_key"])
    return {"algorithm": "ed25519", "key_id": manifests.key_id(public), "public_key_pem": ed25519.public_key_pem(public),
            "public_key": public.hex(), "created_date": iso(row["created_at"])}


async def get_signing_key(request: web.Request) -> web.Response:
    """GET P/signing-key: the public key release manifests are signed with."""
    _, p = await project_for(request)
    row = await projects_store.signing_key(request.app[POOL], p["id"])
    if row is None:
        raise NotFound("this project signs no manifests: POST signing-key to create a key")
    return data(_signing_key_json(row))


async def create_signing_key(request: web.Request) -> web.Response:
    """POST P/signing-key: create (or rotate) the project's Ed25519 manifest key. The private key
    stays in the database; only the public key is ever returned."""
    from gateway.crypto import ed25519

    ident, p = await project_for(request)
    ident.require("manager")
    await body_json(request, {})
    seed = ed25519.new_seed()
    async with request.app[POOL].acquire() as conn, conn.transaction():
        before = await projects_store.signing_key(conn, p["id"])
        await projects_store.set_signing_key(conn, p["id"], seed, ed25519.public_key(seed))
        row = await projects_store.signing_key(conn, p["id"])
        await insight_store.audit(conn, p["id"], ident.actor, "signing_key.rotate" if before else "signing_key.create",
                          f"project:{p['slug']}", before and {"public_key": bytes(before["public_key"]).hex()},
                          {"public_key": bytes(row["public_key"]).hex()})
        await db_store.notify(conn, f"project:{p['id']}")
    await refresh(request, f"project:{p['id']}")
    return data(_signing_key_json(row), status=201)


async def delete_signing_key(request: web.Request) -> web.Response:
    ident, p = await project_for(request)
    ident.require("manager")
    await body_json(request, {})
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if not await projects_store.delete_signing_key(conn, p["id"]):
            raise NotFound("this project has no signing key")
        await insight_store.audit(conn, p["id"], ident.actor, "signing_key.delete", f"project:{p['slug']}", None, None)
        await db_store.notify(conn, f"project:{p['id']}")
    await refresh(request, f"project:{p['id']}")
    return web.Response(status=204)


async def software_type_values(request: web.Request) -> web.Response:
    _, p = await project_for(request)
    rows = await projects_store.list_software_types(request.app[POOL], p["id"])
    return data([{"name": r["name"]} for r in rows])


async def software_version(request: web.Request) -> web.Response:
    _, p = await project_for(request)
    rel = await releases_store.find_release(request.app[POOL], p["id"], request.match_info["type"],
                                   request.match_info["version"], None)
    if rel is None:
        raise NotFound("software version not found")
    return data({"version": rel["version"], "software_type": rel["software_type"], "release_id": rel["id"]})


# -- uploads and releases -----------------------------------------------------------------------

async def create_upload(request: web.Request) -> web.Response:
    _, p = await project_for(request)
    # memfault-cli 1.x sends the kind of file (OTA_PAYLOAD, ...) and its size
    body = await body_json(request, {"kind": None, "size": None})
    settings = request.app[SETTINGS]
    size = body.get("size")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise BadRequest("size must be a non-negative integer")
    if size is not None and size > settings.max_upload_size:
        raise BadRequest(f"Uploaded file is too big: the limit is {settings.max_upload_size} bytes",
                         type="file_too_big")
    token = new_upload_token()
    await releases_store.create_upload(request.app[POOL], p["id"], token, settings.upload_ttl)
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
