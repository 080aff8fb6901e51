"""hawkBit DDI devices: their attributes, actions with feedback history, retrying a failed
release, per-release action counts, and the DDI part of "inspect device"."""
from __future__ import annotations

from gateway.domain import notify
from gateway.domain.ddi_actions import HAWKBIT_STATUS, Caller, effective_identity, plan
from gateway.domain.errors import Conflict, NotFound
from gateway.domain.fields import iso
from gateway.memory.ddi_loader import device_state
from gateway.memory.mirror import ProjectView
from gateway.services import Change, Context, changes, protect
from gateway.services.changes import Tx
from gateway.services.protect import applier
from gateway.store import ddi as ddi_store
from gateway.store import fleet as fleet_store

ACTION_STATUSES = ("open", "canceling", "succeeded", "failed", "canceled")


def action_json(a) -> dict:
    return {"id": a["id"], "status": a["status"], "hawkbit_status": HAWKBIT_STATUS[a["status"]],
            "release_id": a["release_id"], "software_type": a["software_type"], "version": a["version"],
            "delta_from": a["from_version"], "reason": a["reason"], "cancel_rejected": a["cancel_rejected"],
            "created_date": iso(a["created_at"]), "retrieved_date": iso(a["retrieved_at"]),
            "closed_date": iso(a["closed_at"]), "retried_date": iso(a["retried_at"]), "retried_by": a["retried_by"],
            "feedback": a["feedback"]}


async def device_row(conn, project_id: int, serial: str):
    row = await ddi_store.device_ddi_row(conn, project_id, serial)
    if row is None:
        raise NotFound(f"device {serial} not found")
    return row


async def device_ddi(ctx: Context, serial: str) -> dict:
    dev = await device_row(ctx.pool, ctx.pid, serial)
    return {"device_serial": dev["serial"], "hardware_version": dev["hardware_version"],
            "software_type": dev["ddi_software_type"], "attributes": dev["ddi_attributes"] or {},
            "config_requested": dev["ddi_config_requested"], "target_token_set": dev["has_token"]}


async def device_actions(ctx: Context, serial: str) -> list[dict]:
    """The device's actions, newest first, each with its feedback history."""
    dev = await device_row(ctx.pool, ctx.pid, serial)
    return [action_json(a) for a in await ddi_store.list_actions(ctx.pool, dev["id"])]


async def retry_action(ctx: Context, serial: str, action_id: int) -> Change:
    """Offer a release that failed on this device again (only a request in a cohort that
    requires approval). The device's cached DDI state goes with the mirror refresh."""
    return await protect.run(ctx, "device.ddi_retry", {"serial": serial, "action_id": action_id})


@applier("device.ddi_retry")
async def _retry(tx: Tx, p: dict, approved: bool) -> Change:
    ctx, conn, actor = tx.ctx, tx.conn, tx.actor
    serial, action_id = p["serial"], p["action_id"]
    row = await ddi_store.device_action(conn, ctx.pid, serial, action_id, lock=True)
    if row is None:
        raise NotFound(f"action {action_id} of device {serial} not found")
    if row["status"] != "failed" or row["release_id"] is None:
        raise Conflict(f"action {action_id} is {row['status']}; only a failed action can be retried")
    dev = await fleet_store.device_row(conn, ctx.pid, serial)
    cohort = await fleet_store.cohort_by_id(conn, ctx.pid, dev["cohort_id"])
    pending = await protect.guard(tx, [cohort], "device.ddi_retry", approved=approved, params=p,
                                  release_id=row["release_id"])
    if pending:
        return pending
    cleared = await ddi_store.retry_failed(conn, row["device_id"], row["release_id"], actor)
    if not cleared:
        raise Conflict(f"release {row['version']} was already retried on device {serial}")
    await tx.audit("device.ddi_retry", f"device:{serial}", {"action_id": row["id"]},
                   {"release_id": row["release_id"]})
    await tx.changed(notify.device(ctx.pid, serial))  # every process drops its cached DDI state
    return Change({"device_serial": serial, "action_id": row["id"], "release_id": row["release_id"],
                   "version": row["version"], "cleared_failures": cleared})


async def release_stats(ctx: Context) -> list[dict]:
    """DDI actions per release and status, e.g. failures per release."""
    out: dict = {}
    for r in await ddi_store.release_stats(ctx.pool, ctx.pid):
        entry = out.setdefault(r["release_id"], {
            "release_id": r["release_id"], "software_type": r["software_type"], "version": r["version"],
            "delta_from": r["from_version"], "actions": {s: 0 for s in ACTION_STATUSES}})
        entry["actions"][r["status"]] += r["n"]
    return list(out.values())


async def inspect_ddi(res, view: ProjectView, serial: str, software_type: str) -> dict:
    """The DDI answer for "inspect device", computed like a poll but without writing anything."""
    state = await device_state(res, view, serial)
    hw, sw = effective_identity(view, state)
    if sw != software_type:
        return {"ddi": {"software_type": sw, "applies": False}}
    offer = plan(Caller(view, serial, None, state))
    return {"ddi": {"software_type": sw, "hardware_version": hw, "applies": True,
                    "next": offer.what or offer.reason, "reason": offer.reason,
                    "action_id": offer.action.id if offer.action else None,
                    "blocked_release_ids": sorted(state.blocked)}}


async def set_token(ctx: Context, serial: str, token_hash: str | None) -> None:
    """Set, rotate (`token_hash`) or remove (None) the device's TargetToken."""
    ctx.ident.require("editor")
    async with changes.write(ctx) as tx:
        if not await ddi_store.set_token(tx.conn, ctx.pid, serial, token_hash):
            raise NotFound(f"device {serial} not found")
        await tx.audit("device.ddi_token", f"device:{serial}", None, {"set": token_hash is not None})
        await tx.changed(notify.device(ctx.pid, serial))
