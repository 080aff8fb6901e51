"""Project settings. Those that change how versions are read or which software type and
hardware version a DDI device has (strict_semver, ddi_software_type, ddi_hardware_version)
change what devices of every cohort get, so they pass the protected-cohort rule for every
protected cohort of the project. `ddi_gateway_token` (whether the project key may act as a DDI
GatewayToken) decides who may poll, not what a device gets."""
from __future__ import annotations

from gateway.crypto import ed25519, manifests
from gateway.domain import notify
from gateway.domain.errors import NotFound
from gateway.domain.fields import iso
from gateway.services import Change, Context, changes, protect
from gateway.services.changes import Tx
from gateway.services.protect import applier
from gateway.store import fleet as fleet_store
from gateway.store import projects as projects_store

# settings that change what a device is offered (poll_limit_per_minute only paces polls)
_ANSWER_SETTINGS = {"strict_semver", "ddi_software_type", "ddi_hardware_version"}


@applier("project.update")
async def _update_project(tx: Tx, p: dict, approved: bool) -> Change:
    ctx, conn = tx.ctx, tx.conn
    pid, changes = ctx.pid, p["changes"]
    current = await projects_store.project_by_slugs(conn, ctx.project["org_slug"], ctx.project["slug"])
    if _ANSWER_SETTINGS & {k for k, v in changes.items() if current[k] != v}:
        pending = await protect.guard(tx, await fleet_store.guarded_cohorts(conn, pid), "project.update",
                                      approved=approved, params=p)
        if pending:
            return pending
    await projects_store.update_project(conn, pid, changes)
    for key in ("ddi_software_type", "ddi_hardware_version"):
        if changes.get(key):
            add = projects_store.add_software_type if key == "ddi_software_type" else projects_store.add_hardware_version
            await add(conn, pid, changes[key])
    await tx.audit("project.update", f"project:{ctx.project['slug']}",
                      {k: current[k] for k in changes}, changes)
    await tx.changed(notify.project(pid))
    return Change(changes)


async def update_project(ctx: Context, changes: dict) -> Change:
    """Change project settings (manager role)."""
    return await protect.run(ctx, "project.update", {"changes": changes}, role="manager")


def signing_key_json(row) -> dict:
    """The REST shape of a project's signing key (public half only)."""
    public = bytes(row["public_key"])
    return {"algorithm": "ed25519", "key_id": manifests.key_id(public), "public_key_pem": ed25519.public_key_pem(public),
            "public_key": public.hex(), "created_date": iso(row["created_at"])}


async def get_signing_key(ctx: Context) -> dict:
    """The public key release manifests are signed with; 404 when the project signs none."""
    row = await projects_store.signing_key(ctx.pool, ctx.pid)
    if row is None:
        raise NotFound("this project signs no manifests: POST signing-key to create a key")
    return signing_key_json(row)


async def rotate_signing_key(ctx: Context) -> dict:
    """Create (or replace) the project's Ed25519 manifest key; the private key never leaves the
    database."""
    ctx.ident.require("manager")
    seed = ed25519.new_seed()
    async with changes.write(ctx) as tx:
        before = await projects_store.signing_key(tx.conn, ctx.pid)
        await projects_store.set_signing_key(tx.conn, ctx.pid, seed, ed25519.public_key(seed))
        row = await projects_store.signing_key(tx.conn, ctx.pid)
        await tx.audit("signing_key.rotate" if before else "signing_key.create", f"project:{ctx.project['slug']}",
                       before and {"public_key": bytes(before["public_key"]).hex()},
                       {"public_key": bytes(row["public_key"]).hex()})
        await tx.changed(notify.project(ctx.pid))
    return signing_key_json(row)


async def delete_signing_key(ctx: Context) -> None:
    """Stop signing manifests."""
    ctx.ident.require("manager")
    async with changes.write(ctx) as tx:
        if not await projects_store.delete_signing_key(tx.conn, ctx.pid):
            raise NotFound("this project has no signing key")
        await tx.audit("signing_key.delete", f"project:{ctx.project['slug']}", None, None)
        await tx.changed(notify.project(ctx.pid))


def project_json(p) -> dict:
    """The REST shape of a project and its settings."""
    return {"id": p["id"], "slug": p["slug"], "name": p["name"], "organization": {"slug": p["org_slug"]},
            "strict_semver": p["strict_semver"], "ddi_tenant": p["slug"],
            "ddi_software_type": p["ddi_software_type"], "ddi_hardware_version": p["ddi_hardware_version"],
            "poll_limit_per_minute": p["poll_limit_per_minute"], "ddi_gateway_token": p["ddi_gateway_token"],
            "created_date": iso(p["created_at"])}
