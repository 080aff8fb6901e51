"""Project settings. Those that change how versions are read or which software type and
hardware version a DDI device has (strict_semver, ddi_software_type, ddi_hardware_version)
change what devices of every cohort get, so they pass the protected-cohort rule for every
protected cohort of the project."""
from __future__ import annotations

from gateway.services import Change, Context, protect
from gateway.services.protect import applier
from gateway.store import db as db_store
from gateway.store import fleet as fleet_store
from gateway.store import insight as insight_store
from gateway.store import projects as projects_store

# settings that change what a device is offered (poll_limit_per_minute only paces polls)
_ANSWER_SETTINGS = {"strict_semver", "ddi_software_type", "ddi_hardware_version"}


@applier("project.update")
async def _update_project(ctx: Context, conn, p: dict, actor: str, approved: bool) -> Change:
    pid, changes = ctx.pid, p["changes"]
    current = await projects_store.project_by_slugs(conn, ctx.project["org_slug"], ctx.project["slug"])
    if _ANSWER_SETTINGS & {k for k, v in changes.items() if current[k] != v}:
        pending = await protect.guard(ctx, conn, await fleet_store.guarded_cohorts(conn, pid), "project.update",
                                      approved=approved, params=p)
        if pending:
            return pending
    await projects_store.update_project(conn, pid, changes)
    for key in ("ddi_software_type", "ddi_hardware_version"):
        if changes.get(key):
            add = projects_store.add_software_type if key == "ddi_software_type" else projects_store.add_hardware_version
            await add(conn, pid, changes[key])
    await insight_store.audit(conn, pid, actor, "project.update", f"project:{ctx.project['slug']}",
                      {k: current[k] for k in changes}, changes)
    await db_store.notify(conn, f"project:{pid}")
    return Change(changes, messages=(f"project:{pid}",))


async def update_project(ctx: Context, changes: dict) -> Change:
    """Change project settings (manager role)."""
    return await protect.run(ctx, "project.update", {"changes": changes}, role="manager")
