"""The fleet: cohorts, devices and their version history (reads)."""
from __future__ import annotations

from gateway.domain import notify
from gateway.domain.errors import Conflict, NotFound
from gateway.domain.fields import iso
from gateway.services import Context, changes
from gateway.store import fleet as fleet_store
from gateway.store import insight as insight_store


def cohort_json(c) -> dict:
    out = {"id": c["id"], "slug": c["slug"], "name": c["name"], "is_default": c["is_default"],
           "protected": c["protected"], "version_checking": c["version_checking"],
           "ddi_polling_interval": c["ddi_polling_interval"], "ddi_update_type": c["ddi_update_type"],
           "requires_approval": c["requires_approval"], "created_date": iso(c["created_at"])}
    if "device_count" in c.keys():
        out["device_count"] = c["device_count"]
    return out


def device_json(d) -> dict:
    return {"device_serial": d["serial"], "hardware_version": d["hardware_version"],
            # what it reports when that differs from what it registered with (polls answer for it)
            "reported_hardware_version": d["reported_hardware_version"],
            "cohort": {"id": d["cohort_id"], "slug": d["cohort_slug"], "name": d["cohort_name"]},
            # staged for any software type, and for which (each its cohort's staged rollout)
            "staged": bool(d["staged_types"]), "staged_software_types": list(d["staged_types"]),
            "release_override_id": d["release_override_id"],
            "software_versions": d["versions"], "last_seen": iso(d["last_seen"]),
            "created_date": iso(d["created_at"])}


async def list_cohorts(ctx: Context) -> list[dict]:
    return [cohort_json(c) for c in await fleet_store.list_cohorts(ctx.pool, ctx.pid)]


async def get_cohort(ctx: Context, slug: str) -> dict:
    row = next((c for c in await fleet_store.list_cohorts(ctx.pool, ctx.pid) if c["slug"] == slug), None)
    if row is None:
        raise NotFound(f"cohort {slug!r} not found")
    return cohort_json(row)


async def list_devices(ctx: Context, *, cohort: str | None = None, hardware_version: str | None = None,
                       serial_prefix: str | None = None, limit: int = 100, page: int = 1) -> tuple[int, list[dict]]:
    """(total matching, one page of devices), most recently seen first."""
    total, rows = await fleet_store.list_devices(ctx.pool, ctx.pid, cohort=cohort or None,
                                           hardware_version=hardware_version or None,
                                           serial_prefix=serial_prefix or None,
                                           limit=limit, offset=(page - 1) * limit)
    return total, [device_json(r) for r in rows]


async def get_device(ctx: Context, serial: str) -> dict:
    row = await fleet_store.device_row(ctx.pool, ctx.pid, serial)
    if row is None:
        raise NotFound(f"device {serial} not found")
    return device_json(row)


async def device_history(ctx: Context, serial: str, limit: int = 500) -> list[dict]:
    if await fleet_store.device_row(ctx.pool, ctx.pid, serial) is None:
        raise NotFound(f"device {serial} not found")
    rows = await insight_store.device_history(ctx.pool, ctx.pid, serial, limit)
    return [{"software_type": r["software_type"], "version": r["version"],
             "previous_version": r["previous_version"], "protocol": r["protocol"],
             "date": iso(r["seen_at"])} for r in rows]


async def create_cohort(ctx: Context, slug: str, name: str) -> dict:
    """A new, empty cohort (409 when the slug is taken)."""
    ctx.ident.require("editor")
    async with changes.write(ctx) as tx:
        row = await fleet_store.create_cohort(tx.conn, ctx.pid, slug, name)
        if row is None:
            raise Conflict(f"cohort {slug!r} already exists")
        await tx.audit("cohort.create", f"cohort:{slug}", None, {"name": name})
        await tx.changed(notify.project(ctx.pid))
    return cohort_json(row)
