"""Approval requests: listing them, and approving (carrying out) or rejecting one.

A request holds a change that `protect.guard` held back in a cohort that requires approval.
Approving it runs the change's registered applier in the approver's transaction: the approver's
permission is checked again, and the audit names both identities."""
from __future__ import annotations

from gateway.domain.errors import BadRequest, Conflict, Forbidden, NotFound
from gateway.services import Context, changes, protect
from gateway.services.protect import request_json
from gateway.store import fleet as fleet_store
from gateway.store import requests as store_requests

STATUSES = ("pending", "approved", "rejected", "all")


async def list_requests(ctx: Context, status: str = "pending") -> list[dict]:
    """Requests of the project in one status (or `all`), oldest first."""
    if status not in STATUSES:
        raise BadRequest("status must be pending, approved, rejected or all")
    rows = await store_requests.list_requests(ctx.pool, ctx.pid, status=None if status == "all" else status)
    return [request_json(r) for r in rows]


def _request_params(req) -> dict:
    """What an approved request carries out: its stored params, or for activations (also those
    filed before params existed) the typed columns."""
    if req["action"] == "activate":
        return {**(req["params"] or {}), "release_id": req["release_id"], "cohort_id": req["cohort_id"],
                "type": req["type"], "rollout_percent": req["rollout_percent"]}
    if req["action"] == "deactivate":
        return {"activation_id": req["activation_id"]}
    return req["params"]


async def decide(ctx: Context, rid: int, approve: bool) -> dict:
    """Approve (and carry out) or reject a pending request; never by the identity that filed it,
    and only by one allowed to make the change itself."""
    ident, pid = ctx.ident, ctx.pid
    ident.require("editor")
    async with changes.write(ctx) as tx:
        rows = await store_requests.list_requests(tx.conn, pid, request_id=rid, for_update=True)
        if not rows:
            raise NotFound(f"activation request {rid} not found")
        req = rows[0]
        if req["status"] != "pending":
            raise Conflict(f"activation request {rid} is already {req['status']}")
        if req["requested_by"] == ident.actor:
            raise Forbidden("an activation request must be approved or rejected by a different identity")
        cohort = await fleet_store.cohort_by_id(tx.conn, pid, req["cohort_id"])
        if not protect.may_change(ident, cohort):
            raise Forbidden(f"cohort {cohort['slug']!r} is protected: deciding its requests needs the manager role "
                            "or a token allowed to activate protected cohorts")
        if approve:
            run = protect.APPLIERS.get(req["action"])
            if run is None:
                raise Conflict(f"activation request {rid} is of an unknown kind {req['action']!r}")
            await run(tx.acting_as(f"{req['requested_by']} (approved by {ident.actor})"), _request_params(req), True)
        await store_requests.decide(tx.conn, rid, "approved" if approve else "rejected", ident.actor)
        await tx.audit("deployment.approve" if approve else "deployment.reject", f"request:{rid}",
                       {"status": "pending"}, {"status": "approved" if approve else "rejected"})
        req = (await store_requests.list_requests(tx.conn, pid, request_id=rid))[0]
    return request_json(req)
