"""Writes that change what devices get, one cohort at a time: provisioning a device into a
cohort, moving it, pinning it to a release, staging, a cohort's settings and a project key that
polls as a cohort. Each is registered with `protect` so the protected-cohort rule and approvals
apply the same way whether it is carried out now or when its request is approved."""
from __future__ import annotations

from gateway.domain import notify
from gateway.domain.errors import BadRequest, Conflict, NotFound
from gateway.domain.fields import iso
from gateway.services import Change, Context, changes, protect
from gateway.services.changes import Tx
from gateway.services.fleet import cohort_json, device_json
from gateway.services.protect import applier
from gateway.store import access as access_store
from gateway.store import fleet as fleet_store
from gateway.store import projects as projects_store
from gateway.store import releases as releases_store
from gateway.store import staging as staging_store


async def _cohort(conn, pid: int, cohort_id: int):
    cohort = await fleet_store.cohort_by_id(conn, pid, cohort_id)
    if cohort is None:
        raise Conflict("the cohort of this change no longer exists")
    return cohort


async def _device(conn, pid: int, serial: str):
    dev = await fleet_store.device_row(conn, pid, serial)
    if dev is None:
        raise NotFound(f"device {serial} not found")
    return dev


@applier("device.create")
async def _create_device(tx: Tx, p: dict, approved: bool) -> Change:
    ctx, conn = tx.ctx, tx.conn
    cohort = await _cohort(conn, ctx.pid, p["cohort_id"])
    if await fleet_store.device_row(conn, ctx.pid, p["serial"]) is not None:
        raise Conflict(f"device {p['serial']} already exists")
    # a new serial has never been offered anything, so provisioning needs the cohort's
    # permission but no approval (a device that already polls exists: moving it does)
    await protect.guard(tx, [cohort], "device.create", approved=True, params=p)
    if not await fleet_store.create_device(conn, ctx.pid, p["serial"], p["hardware_version"], cohort["id"]):
        raise Conflict(f"device {p['serial']} already exists")
    await projects_store.add_hardware_version(conn, ctx.pid, p["hardware_version"])
    await tx.audit("device.create", f"device:{p['serial']}", None,
                      {"hardware_version": p["hardware_version"], "cohort": cohort["slug"]})
    await tx.changed(notify.project(ctx.pid), notify.device(ctx.pid, p["serial"]))
    return Change(device_json(await fleet_store.device_row(conn, ctx.pid, p["serial"])), created=True)


async def create_device(ctx: Context, serial: str, hardware_version: str, cohort_slug: str) -> Change:
    """Factory provisioning: a device with its hardware version, in a cohort."""
    async with ctx.pool.acquire() as conn:
        cohort = await fleet_store.cohort_by_slug(conn, ctx.pid, cohort_slug)
    if cohort is None:
        raise BadRequest(f"cohort {cohort_slug!r} not found")
    return await protect.run(ctx, "device.create", {"serial": serial, "hardware_version": hardware_version,
                                                    "cohort_id": cohort["id"]})


@applier("device.move")
async def _move_device(tx: Tx, p: dict, approved: bool) -> Change:
    ctx, conn = tx.ctx, tx.conn
    dev = await _device(conn, ctx.pid, p["serial"])
    target = await _cohort(conn, ctx.pid, p["cohort_id"])
    source = await _cohort(conn, ctx.pid, dev["cohort_id"])
    # leaving a cohort changes what the device gets as much as joining one
    pending = await protect.guard(tx, [source, target], "device.move", approved=approved, params=p,
                                  summary={"serial": p["serial"], "from": source["slug"], "to": target["slug"]})
    if pending:
        return pending
    await staging_store.forget_device(conn, dev["id"])  # in its new cohort it joins later
    await fleet_store.move_device(conn, ctx.pid, p["serial"], target["id"])
    await tx.audit("device.move", f"device:{p['serial']}",
                      {"cohort": source["slug"]}, {"cohort": target["slug"]})
    await tx.changed(notify.device(ctx.pid, p["serial"]))
    return Change(device_json(await fleet_store.device_row(conn, ctx.pid, p["serial"])))


async def move_device(ctx: Context, serial: str, cohort_slug: str, **preview) -> Change:
    """Move a device to another cohort (it is un-staged)."""
    async with ctx.pool.acquire() as conn:
        await _device(conn, ctx.pid, serial)
        cohort = await fleet_store.cohort_by_slug(conn, ctx.pid, cohort_slug)
    if cohort is None:
        raise BadRequest(f"cohort {cohort_slug!r} not found")
    return await protect.run(ctx, "device.move", {"serial": serial, "cohort_id": cohort["id"]}, **preview)


@applier("device.override")
async def _set_override(tx: Tx, p: dict, approved: bool) -> Change:
    ctx, conn = tx.ctx, tx.conn
    dev = await _device(conn, ctx.pid, p["serial"])
    cohort = await _cohort(conn, ctx.pid, dev["cohort_id"])
    release_id = p["release_id"]
    if release_id is not None and not await releases_store.releases_with_payloads(conn, ctx.pid, release_id=release_id):
        raise Conflict(f"release {release_id} no longer exists")
    pending = await protect.guard(tx, [cohort], "device.override", approved=approved, params=p,
                                  release_id=release_id)
    if pending:
        return pending
    await fleet_store.set_override(conn, ctx.pid, p["serial"], release_id)
    await tx.audit("device.override" if release_id else "device.clear_override",
                      f"device:{p['serial']}", {"release_override_id": dev["release_override_id"]},
                      {"release_override_id": release_id})
    await tx.changed(notify.device(ctx.pid, p["serial"]))
    return Change(device_json(await fleet_store.device_row(conn, ctx.pid, p["serial"])))


async def set_override(ctx: Context, serial: str, release_id: int | None, **preview) -> Change:
    """Pin a device to a release (`release_id`), or clear its pin (None)."""
    return await protect.run(ctx, "device.override", {"serial": serial, "release_id": release_id}, **preview)


@applier("cohort.stage")
async def _stage(tx: Tx, p: dict, approved: bool) -> Change:
    ctx, conn = tx.ctx, tx.conn
    cohort = await _cohort(conn, ctx.pid, p["cohort_id"])
    pending = await protect.guard(tx, [cohort], "cohort.stage", approved=approved, params=p)
    if pending:
        return pending
    serials, filters = p.get("serials"), p.get("filters") or {}
    act = await _staged_activation(conn, cohort, filters.get("software_type"))
    if serials is not None:
        found = await staging_store.stage_serials(conn, act["id"], ctx.pid, serials, p["staged"])
        missing = sorted(set(serials) - set(found))
        if missing:
            raise NotFound(f"not devices of cohort {cohort['slug']!r}: {', '.join(missing[:20])}")
        changed = len(found)
    else:
        changed = await staging_store.stage_filtered(
            conn, act["id"], staged=p["staged"], limit=p.get("limit"), order=p.get("order", "last_seen"),
            current_version=filters.get("current_version"), hardware_version=filters.get("hardware_version"))
    total, staged_now, _takers = await staging_store.counts(conn, act["id"])
    await tx.audit("cohort.stage" if p["staged"] else "cohort.unstage",
                      f"cohort:{cohort['slug']}", None,
                      {"changed": changed, "serials": serials, "limit": p.get("limit"),
                       **{k: v for k, v in filters.items() if v}})
    await tx.changed(notify.cohort_devices(ctx.pid, cohort["id"]))
    return Change({"changed": changed, "staged": staged_now, "devices": total, "deployment_id": act["id"],
                   "software_type": act["software_type"], "release": act["version"]})


async def _staged_activation(conn, cohort, software_type: str | None):
    """The staged rollout that manual staging changes: the cohort's one for `software_type`, or
    its only one. Staged membership belongs to a staged rollout (store/staging.py)."""
    acts = await staging_store.staged_activations(conn, cohort["id"])
    if software_type is not None:
        acts = [a for a in acts if a["software_type"] == software_type]
    if not acts:
        what = f" of software type {software_type!r}" if software_type else ""
        raise Conflict(f"cohort {cohort['slug']!r} has no staged rollout{what}: deploy a release as a "
                       "staged_rollout first, then stage devices for it", type="no_staged_rollout")
    if len(acts) > 1:
        raise BadRequest(f"software_type is required: cohort {cohort['slug']!r} has staged rollouts of "
                         + ", ".join(a["software_type"] for a in acts))
    return acts[0]


async def stage(ctx: Context, cohort_slug: str, *, staged: bool, serials: list[str] | None, limit: int | None,
                order: str, filters: dict, **preview) -> Change:
    """Stage or unstage named devices of a cohort, or up to `limit` matching `filters`."""
    async with ctx.pool.acquire() as conn:
        cohort = await fleet_store.cohort_by_slug(conn, ctx.pid, cohort_slug)
    if cohort is None:
        raise NotFound(f"cohort {cohort_slug!r} not found")
    return await protect.run(ctx, "cohort.stage", {"cohort_id": cohort["id"], "staged": staged, "serials": serials,
                                                   "limit": limit, "order": order,
                                                   "filters": {k: v for k, v in filters.items() if v}}, **preview)


# Cohort settings that only tighten the rule or rename: they never change what a device gets.
_TIGHTENING = {("protected", True), ("requires_approval", True)}


@applier("cohort.update")
async def _update_cohort(tx: Tx, p: dict, approved: bool) -> Change:
    ctx, conn = tx.ctx, tx.conn
    cohort = await _cohort(conn, ctx.pid, p["cohort_id"])
    changes = {k: v for k, v in p["changes"].items() if cohort[k] != v}
    harmless = all(k == "name" or (k, v) in _TIGHTENING for k, v in changes.items())
    pending = await protect.guard(tx, [cohort], "cohort.update", approved=approved or harmless, params=p,
                                  summary={"cohort": cohort["slug"], "changes": p["changes"]})
    if pending:
        return pending
    row = await fleet_store.update_cohort(conn, cohort["id"], p["changes"])
    await tx.audit("cohort.update", f"cohort:{cohort['slug']}",
                      {k: cohort[k] for k in p["changes"]}, p["changes"])
    if "version_checking" in p["changes"]:
        await tx.rebuild()
    else:
        await tx.changed(notify.project(ctx.pid))
    return Change(cohort_json(row))


async def update_cohort(ctx: Context, slug: str, changes: dict) -> Change:
    """Change a cohort's settings; protection and approval settings need the manager role."""
    if {"protected", "requires_approval"} & set(changes):
        ctx.ident.require("manager")
    async with ctx.pool.acquire() as conn:
        cohort = await fleet_store.cohort_by_slug(conn, ctx.pid, slug)
    if cohort is None:
        raise NotFound(f"cohort {slug!r} not found")
    return await protect.run(ctx, "cohort.update", {"cohort_id": cohort["id"], "changes": changes})


@applier("project_key.create")
async def _create_key(tx: Tx, p: dict, approved: bool) -> Change:
    ctx, conn = tx.ctx, tx.conn
    cohort = await _cohort(conn, ctx.pid, p["cohort_id"]) if p.get("cohort_id") is not None else None
    # a key with a cohort override makes every device polling with it a device of that cohort
    pending = await protect.guard(tx, [cohort], "project_key.create", approved=approved, params=p,
                                  summary={"name": p["name"], "cohort_override": cohort and cohort["slug"]})
    if pending:
        return pending
    kid = await access_store.create_project_key(conn, ctx.pid, p["name"], p["secret_hash"], cohort and cohort["id"])
    await tx.audit("project_key.create", f"project_key:{kid}", None,
                      {"name": p["name"], "cohort_override": cohort and cohort["slug"]})
    await tx.changed(notify.keys())
    row = next(k for k in await access_store.list_project_keys(conn, ctx.pid) if k["id"] == kid)
    return Change(key_json(row), created=True)


def key_json(k) -> dict:
    """The REST shape of a project key (never its secret)."""
    return {"id": k["id"], "name": k["name"], "cohort_override": k["cohort_override"],
            "created_date": iso(k["created_at"]), "revoked_date": iso(k["revoked_at"])}


async def create_key(ctx: Context, name: str, secret_hash: str, cohort_slug: str | None) -> Change:
    """A project key (stored hashed), optionally polling as `cohort_slug` (a recovery key). In a
    cohort that requires approval the key works only once the request is approved."""
    ctx.ident.require("manager")
    cohort_id = None
    if cohort_slug:
        async with ctx.pool.acquire() as conn:
            cohort = await fleet_store.cohort_by_slug(conn, ctx.pid, cohort_slug)
        if cohort is None:
            raise BadRequest(f"cohort_override: cohort {cohort_slug!r} not found")
        cohort_id = cohort["id"]
    return await protect.run(ctx, "project_key.create",
                             {"name": name, "cohort_id": cohort_id, "secret_hash": secret_hash}, role="manager")


async def list_keys(ctx: Context) -> list[dict]:
    """The project's keys (never their secrets)."""
    return [key_json(k) for k in await access_store.list_project_keys(ctx.pool, ctx.pid)]


async def revoke_key(ctx: Context, key_id: int) -> None:
    """Revoke a project key: devices polling with it are refused from then on."""
    ctx.ident.require("manager")
    async with changes.write(ctx) as tx:
        if not await access_store.revoke_project_key(tx.conn, ctx.pid, key_id):
            raise NotFound(f"project key {key_id} not found or already revoked")
        await tx.audit("project_key.revoke", f"project_key:{key_id}", None, None)
        await tx.changed(notify.keys())
