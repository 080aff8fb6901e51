"""Protected cohorts and approvals, enforced the same way on every write.

`guard` applies `domain.access.protected_change` inside a write's transaction: it refuses (403),
files an approval request (the write answers 202 and changes nothing), or lets the write go on.
Every write that can change what a device gets calls it with the cohorts it touches and
registers, under its action name, how to carry it out when a request is approved (`applier`).
Approving runs that applier in the approver's transaction, with the approver's permission
checked again and the requester named in the audit entries.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from gateway.domain import access, staging
from gateway.domain.errors import Conflict, Forbidden
from gateway.domain.fields import iso
from gateway.services import Change, Context, changes, preview
from gateway.services.changes import Tx
from gateway.store import requests as store_requests

# (tx, params, approved) -> Change: carries out one write inside the caller's transaction,
# calling `guard` itself; `approved` when an approved request is being carried out
Applier = Callable[[Tx, dict, bool], Awaitable[Change]]
# action name -> how to carry out that write, now or when its request is approved
APPLIERS: dict[str, Applier] = {}


def applier(action: str) -> Callable[[Applier], Applier]:
    """Register how an approved request of `action` is carried out."""
    def register(fn: Applier) -> Applier:
        APPLIERS[action] = fn
        return fn
    return register


def rules(cohort) -> access.CohortRules:
    """The rule's view of a cohort row."""
    return access.CohortRules(cohort["slug"], cohort["protected"], cohort["requires_approval"])


def may_change(ident, cohort) -> bool:
    """Whether `ident` may change what devices of `cohort` get (approval aside): the dashboard
    greys out what it may not."""
    return access.protected_change(ident.role, ident.can_activate_protected, [rules(cohort)],
                                   approved=True).verdict is access.Verdict.ALLOW


def request_json(q) -> dict:
    """The REST shape of an approval request."""
    return {"id": q["id"], "action": q["action"], "status": q["status"], "cohort": q["cohort_slug"],
            "release": {"id": q["release_id"], "version": q["version"], "delta_from": q["from_version"],
                        "software_type": q["software_type"]} if q["release_id"] is not None else None,
            "type": q["type"], "rollout_percent": q["rollout_percent"], "deployment_id": q["activation_id"],
            # a key's hash is not a secret, but no answer needs it
            "change": {k: v for k, v in q["params"].items() if k != "secret_hash"} if q["params"] else None,
            "requested_by": q["requested_by"], "decided_by": q["decided_by"],
            "created_date": iso(q["created_at"]), "decided_date": iso(q["decided_at"])}


async def guard(tx: Tx, cohorts: Iterable, action: str, *, approved: bool = False,
                params: dict | None = None, release_id: int | None = None, type_: str = "normal",
                rollout_percent: int | None = None, activation_id: int | None = None,
                summary: dict | None = None) -> Change | None:
    """Enforce the protected-cohort rule for a change touching `cohorts` (rows; None entries are
    skipped). Returns None when the change may go on now, a pending Change when a request was
    filed instead; raises Forbidden when the caller may not make it at all."""
    ctx = tx.ctx
    rows = {c["id"]: c for c in cohorts if c is not None}
    decision = access.protected_change(ctx.ident.role, ctx.ident.can_activate_protected,
                                       [rules(c) for c in rows.values()], approved=approved)
    if decision.verdict is access.Verdict.DENY:
        raise Forbidden(decision.message)
    if decision.verdict is access.Verdict.ALLOW:
        return None
    cohort = next(c for c in rows.values() if c["slug"] == decision.cohort)
    rid = await store_requests.create(tx.conn, ctx.pid, cohort_id=cohort["id"], release_id=release_id, action=action,
                                      type_=type_, rollout_percent=rollout_percent, activation_id=activation_id,
                                      params=params, actor=ctx.ident.actor)
    audit_action = "deployment.request" if action in ("activate", "deactivate") else f"{action}.request"
    await tx.audit(audit_action, f"request:{rid}", None, summary if summary is not None else params)
    req = (await store_requests.list_requests(tx.conn, ctx.pid, request_id=rid))[0]
    return Change(request_json(req), pending=True)


async def run(ctx: Context, action: str, params: dict, *, role: str = "editor", dry_run: bool = False,
              preview_token: str | None = None) -> Change:
    """Carry out a registered write now, as the caller (or file its approval request), through
    `changes.write`. `dry_run`: only answer what it would do (services/preview.py), with a token;
    `preview_token`: carry it out only if it still does exactly what that preview said (409)."""
    ctx.ident.require(role)
    if dry_run:
        return await _rehearse(ctx, action, params)
    if preview_token is not None:
        salt, _digest = preview.parse_token(preview_token)
        params = {**params, "salt": salt} if salt else params
    async with changes.write(ctx) as tx:
        before = await preview.snapshot(tx.conn, ctx.pid) if preview_token is not None else None
        change = await APPLIERS[action](tx, params, False)
        if before is not None and not change.pending:
            outcome = preview.diff(before, await preview.snapshot(tx.conn, ctx.pid))
            if not preview.matches(preview_token, outcome):
                raise Conflict("the fleet or the releases changed since the preview: this change would now do "
                               "something else; preview it again", type="preview_outdated")
        return change


async def _rehearse(ctx: Context, action: str, params: dict) -> Change:
    """Do the change in a transaction that is rolled back and answer what it did. A change that
    would only file an approval request is previewed as if approved."""
    salt = staging.new_salt() if "salt" in PREVIEW_SALTED.get(action, ()) else None
    params = {**params, "salt": salt} if salt else params
    async with changes.rehearsal(ctx) as tx:
        before = await preview.snapshot(tx.conn, ctx.pid)
        change = await APPLIERS[action](tx, params, False)
        pending = change.pending
        if pending:
            change = await APPLIERS[action](tx, params, True)
        outcome = preview.diff(before, await preview.snapshot(tx.conn, ctx.pid))
    return Change({"dry_run": True, "preview_token": preview.token(salt, outcome),
                   "would_need_approval": pending, **outcome, "result": change.data})


# actions whose outcome depends on a random draw: a preview pins it in its token
PREVIEW_SALTED = {"activate": ("salt",)}
