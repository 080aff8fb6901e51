"""Releases: listing and lookup by id or version."""
from __future__ import annotations

from gateway.domain import notify
from gateway.domain.errors import BadRequest, Conflict, NotFound, StorageFailed
from gateway.domain.fields import is_id, iso
from gateway.memory.blobs import BlobStore
from gateway.services import Change, Context, protect
from gateway.services.changes import Tx
from gateway.services.protect import applier
from gateway.store import deployments as deployments_store
from gateway.store import fleet as fleet_store
from gateway.store import projects as projects_store
from gateway.store import releases as releases_store


def release_json(r: dict, payloads: list[dict] | None = None) -> dict:
    return {
        "id": r["id"], "version": r["version"], "software_type": r["software_type"],
        "delta_from": r["from_version"], "is_delta": r["from_version"] is not None,
        "must_pass_through": r["must_pass_through"], "revision": r["revision"], "notes": r["notes"],
        "extra_info": r["extra_info"], "created_by": r["created_by"],
        "created_date": r["created_at"] if isinstance(r["created_at"], str) else iso(r["created_at"]),
        "updated_date": r["updated_at"] if isinstance(r["updated_at"], str) else iso(r["updated_at"]),
        "artifacts": [{"id": pl["id"], "type": pl["firmware_type"], "hardware_version": pl["hardware_version"],
                       "filename": pl["filename"], "file_size": pl["size"], "md5": pl["md5"], "sha1": pl["sha1"],
                       "sha256": pl["sha256"], "extra_info": pl["extra_info"]} for pl in (payloads or [])],
        **({"active_deployments": r["active_activations"]} if "active_activations" in r else {}),
    }


async def list_releases(ctx: Context, *, version: str | None = None, software_type: str | None = None,
                        revision: str | None = None, hardware_version: str | None = None) -> list[dict]:
    """Releases, newest first, optionally filtered (empty filters match everything)."""
    rows = await releases_store.releases_with_payloads(ctx.pool, ctx.pid)
    return [release_json(r, r["payloads"]) for r in rows
            if (not version or r["version"] == version)
            and (not software_type or r["software_type"] == software_type)
            and (not revision or r["revision"] == revision)
            and (not hardware_version or any(pl["hardware_version"] == hardware_version for pl in r["payloads"]))]


async def release_by_ref(conn, project_id: int, ref: str) -> dict:
    """A release row (with payloads) by numeric id or by version string (unique across software
    types, full releases only)."""
    if is_id(ref):
        rows = await releases_store.releases_with_payloads(conn, project_id, release_id=int(ref))
    else:
        rows = [r for r in await releases_store.releases_with_payloads(conn, project_id) if r["version"] == ref
                and r["from_version"] is None]
    return _exactly_one(rows, repr(ref), lambda: f"version {ref!r} exists for several software types; use the "
                                                 f"release id ({', '.join(str(r['id']) for r in rows)})")


async def get_release(ctx: Context, ref: str) -> dict:
    r = await release_by_ref(ctx.pool, ctx.pid, ref)
    return release_json(r, r["payloads"])


async def software_version(ctx: Context, software_type: str, version: str) -> dict:
    """A full release by software type and version (Memfault's software-version lookup)."""
    rel = await releases_store.find_release(ctx.pool, ctx.pid, software_type, version, None)
    if rel is None:
        raise NotFound("software version not found")
    return {"version": rel["version"], "software_type": rel["software_type"], "release_id": rel["id"]}


async def create_upload(ctx: Context, token: str, ttl_seconds: int, max_size: int | None = None) -> None:
    """Register an upload target `token`: its bytes, at most `max_size` when given, are PUT once
    to its signed URL within `ttl_seconds`."""
    ctx.ident.require("editor")
    await releases_store.create_upload(ctx.pool, ctx.pid, token, ttl_seconds, max_size)


async def remove_unused_uploads(pool, blobs: BlobStore, *, grace: float = 3600.0, limit: int = 200) -> tuple[int, int]:
    """Housekeeping (no caller, nothing to audit or announce): remove up to `limit` uploads expired
    `grace` seconds ago and never attached to a release nor named by a pending approval request,
    each with its blob unless a payload or another upload refers to it. (rows, blobs) removed."""
    rows = blobs_removed = 0
    async with pool.acquire() as conn:
        for up in await releases_store.unused_uploads(conn, grace, limit):
            sha = up["sha256"]
            try:
                async with conn.transaction():  # a PUT recording this blob waits for this (or this for it)
                    if sha is not None:
                        await releases_store.lock_blob(conn, sha)
                    if not await releases_store.delete_unused_upload(conn, up["id"], grace):
                        continue
                    if sha is not None and not await releases_store.blob_referenced(conn, sha):
                        blobs_removed += blobs.remove(sha)
                    rows += 1
            except StorageFailed:  # logged by the blob store; the row stays, for the next run
                continue
    return rows, blobs_removed


async def software_types(ctx: Context) -> list[str]:
    return [r["name"] for r in await projects_store.list_software_types(ctx.pool, ctx.pid)]


async def _release_row(conn, pid: int, release_id: int) -> dict:
    rows = await releases_store.releases_with_payloads(conn, pid, release_id=release_id)
    if not rows:
        raise NotFound(f"release {release_id} not found")
    return rows[0]


async def _reached(conn, pid: int, release_id: int) -> list:
    return await fleet_store.cohorts_reached_by(conn, pid, release_id)


@applier("release.add_payload")
async def _add_payload(tx: Tx, p: dict, approved: bool) -> Change:
    ctx, conn, actor = tx.ctx, tx.conn, tx.actor
    """Attach an uploaded file to a release: a new release, or one more payload of an existing
    one — which reaches that hardware in every cohort the release is active in."""
    pid = ctx.pid
    upload = await releases_store.get_upload(conn, p["token"])
    if upload is None or upload["project_id"] != pid:
        raise BadRequest("file.token is unknown")
    if upload["status"] != "complete":
        raise BadRequest("file.token: the upload has not completed (PUT the bytes to upload_url first)")
    if p.get("md5") and p["md5"].lower() != upload["md5"]:
        raise BadRequest(f"file.md5 {p['md5']} does not match the uploaded bytes ({upload['md5']})")
    # a request approved later attaches exactly the bytes it was filed with, even if the
    # signed upload URL was used again meanwhile
    if p.setdefault("sha256", upload["sha256"]) != upload["sha256"]:
        raise Conflict("the uploaded file changed after this request was filed; upload and request again")
    version, hw = p["version"], p["hardware_version"]
    rel = await releases_store.find_release(conn, pid, p["software_type"], version, p["from_version"])
    if rel is None:
        rel = await releases_store.create_release(
            conn, pid, software_type=p["software_type"], version=version, from_version=p["from_version"],
            must_pass_through=p["must_pass_through"], revision=p["revision"], notes=p["notes"], extra_info=None,
            created_by=actor)
        created = True
    else:
        created = False
        existing = await releases_store.payload_for(conn, rel["id"], hw, p["firmware_type"])
        if existing is not None:
            if existing["sha256"] == upload["sha256"]:
                raise Conflict(f"release {version} already has this payload for hardware {hw}", type="already_exists")
            raise BadRequest(f"release {version} ({p['software_type']}) already has a different payload for "
                             f"hardware_version {hw}; upload it as a new version")
        pending = await protect.guard(tx, await _reached(conn, pid, rel["id"]), "release.add_payload",
                                      approved=approved, params=p, release_id=rel["id"])
        if pending:
            return pending
        await releases_store.touch_release(conn, rel["id"])
    pl = await releases_store.create_payload(
        conn, rel["id"], hardware_version=hw, firmware_type=p["firmware_type"], filename=p["name"],
        size=upload["size"], sha256=upload["sha256"], md5=upload["md5"], sha1=upload["sha1"],
        extra_info=p["extra_info"])
    await projects_store.add_hardware_version(conn, pid, hw)
    await projects_store.add_software_type(conn, pid, p["software_type"])
    await tx.audit("release.create" if created else "release.add_payload",
                      f"release:{rel['id']}", None,
                      {"version": version, "from_version": p["from_version"], "software_type": p["software_type"],
                       "hardware_version": hw, "sha256": upload["sha256"]})
    await tx.rebuild()
    return Change(release_json(dict(rel), [dict(pl)]), created=created)


async def add_payload(ctx: Context, params: dict) -> Change:
    """POST releases/ota_payload, validated by the adapter: see `_add_payload`."""
    return await protect.run(ctx, "release.add_payload", dict(params))


@applier("release.update")
async def _update_release(tx: Tx, p: dict, approved: bool) -> Change:
    ctx, conn = tx.ctx, tx.conn
    pid = ctx.pid
    r = await _release_row(conn, pid, p["release_id"])
    # notes and extra_info are part of the answer devices get
    pending = await protect.guard(tx, await _reached(conn, pid, r["id"]), "release.update",
                                  approved=approved, params=p, release_id=r["id"])
    if pending:
        return pending
    await releases_store.update_release(conn, r["id"], p["changes"])
    await tx.audit("release.update", f"release:{r['id']}",
                      {k: r[k] for k in p["changes"]}, p["changes"])
    await tx.changed(notify.project(pid))
    r = (await releases_store.releases_with_payloads(conn, pid, release_id=r["id"]))[0]
    return Change(release_json(r, r["payloads"]))


async def update_release(ctx: Context, ref: str, changes: dict) -> Change:
    """Change a release's notes, revision or extra_info."""
    async with ctx.pool.acquire() as conn:
        r = await release_by_ref(conn, ctx.pid, ref)
    return await protect.run(ctx, "release.update", {"release_id": r["id"], "changes": changes})


@applier("release.delete")
async def _delete_release(tx: Tx, p: dict, approved: bool) -> Change:
    ctx, conn = tx.ctx, tx.conn
    pid = ctx.pid
    r = await _release_row(conn, pid, p["release_id"])
    active = await deployments_store.active_activations_of(conn, r["id"])
    if active:
        raise Conflict(f"release {r['version']} is still active in cohort(s) "
                       f"{', '.join(a['cohort'] for a in active)} (deployment ids "
                       f"{', '.join(str(a['id']) for a in active)}); deactivate them first", type="release_active")
    # deleting clears the release overrides pinned to it
    pending = await protect.guard(tx, await _reached(conn, pid, r["id"]), "release.delete",
                                  approved=approved, params=p,  # no release_id: its row goes with the release
                                  summary={"release_id": r["id"], "version": r["version"]})
    if pending:
        return pending
    await releases_store.delete_release(conn, r["id"])
    await tx.audit("release.delete", f"release:{r['id']}", release_json(r, r["payloads"]), None)
    await tx.rebuild()
    return Change({})


async def delete_release(ctx: Context, ref: str) -> Change:
    """Delete a release that is active nowhere."""
    async with ctx.pool.acquire() as conn:
        r = await release_by_ref(conn, ctx.pid, ref)
    return await protect.run(ctx, "release.delete", {"release_id": r["id"]})


async def one_release(conn, project_id: int, version: str, from_version: str | None, software_type: str | None):
    """The release named by version (and delta from-version), disambiguated by software type."""
    rels = [r for r in await releases_store.find_releases(conn, project_id, version, from_version)
            if software_type is None or r["software_type"] == software_type]
    label = f"{from_version} -> {version}" if from_version else version
    return _exactly_one(rels, repr(label), lambda: f"release {label!r} exists for software types "
                                                   f"{', '.join(r['software_type'] for r in rels)}: add software_type")


def _exactly_one(rows: list, label: str, several) -> dict:
    """The one release a reference names: 404 for none, 400 (`several()` says why) for more."""
    if not rows:
        raise NotFound(f"release {label} not found")
    if len(rows) > 1:
        raise BadRequest(several())
    return rows[0]
