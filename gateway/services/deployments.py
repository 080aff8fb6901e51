"""Deployments (release activations): activate, change a staged rollout, pull; protected cohorts;
approval requests; activation history."""
from __future__ import annotations

from dataclasses import dataclass

from gateway.store import requests as store_requests
from gateway.domain.errors import BadRequest, Conflict, Forbidden, NotFound
from gateway.domain.access import Identity
from gateway.services.releases import one_release
from gateway.domain.fields import iso, need_str
from gateway.services import Change, Context, protect
from gateway.services.protect import applier, request_json
from gateway.store import db as db_store
from gateway.store import deployments as deployments_store
from gateway.store import fleet as fleet_store
from gateway.store import insight as insight_store
from gateway.store import releases as releases_store
from gateway.store import resolution as resolution_store


def deployment_json(a) -> dict:
    if a["status"] == "pulled":
        status = "cancelled"
    else:
        status = "in_progress" if a["type"] == "staged_rollout" else "done"
    return {
        "id": a["id"], "type": a["type"], "status": status, "active": a["status"] == "active",
        "rollout_percent": a["rollout_percent"] if a["type"] == "staged_rollout" else 100,
        "release": {"id": a["release_id"], "version": a["version"], "revision": a["revision"],
                    "software_type": a["software_type"], "delta_from": a["from_version"]},
        "cohort": {"id": a["cohort_id"], "slug": a["cohort_slug"], "name": a["cohort_name"]},
        "deployer": a["created_by"], "deployed_date": iso(a["created_at"]),
        "deactivated_by": a["pulled_by"], "deactivated_date": iso(a["pulled_at"]),
    }


def may_change(ident: Identity, cohort) -> bool:
    """Protected cohorts take activation changes only from managers or flagged tokens."""
    return protect.may_change(ident, cohort)


@dataclass(frozen=True, slots=True)
class ActivationSpec:
    """What to activate where: a full release (`from_version` None) or a delta, a normal or a
    staged rollout (`rollout_percent` 0-99; 100 % is normalised to a normal activation)."""
    version: str
    from_version: str | None
    cohort: str
    type: str
    rollout_percent: int | None
    software_type: str | None

    @classmethod
    def parse(cls, body: dict) -> "ActivationSpec":
        """Validate the plain fields of a deployment (as POST deployments takes them)."""
        typ = body.get("type", "normal")
        if typ not in ("normal", "staged_rollout"):
            raise BadRequest("type must be 'normal' or 'staged_rollout'")
        ref = body.get("release")
        if isinstance(ref, list) and len(ref) == 2 and all(isinstance(x, str) and x for x in ref):
            from_version, version = ref
        elif isinstance(ref, str) and ref:
            from_version, version = None, ref
        else:
            raise BadRequest("release is required: a version string or a [from, to] pair for a delta")
        cohort_slug = need_str(body, "cohort", charset=None)
        percent = body.get("rollout_percent")
        if typ == "staged_rollout":
            if not isinstance(percent, int) or isinstance(percent, bool) or not 0 <= percent <= 100:
                raise BadRequest("rollout_percent must be an integer from 0 to 100 for a staged_rollout")
            if percent == 100:
                typ, percent = "normal", None
        else:
            percent = None
        software_type = body.get("software_type")
        if software_type is not None and not isinstance(software_type, str):
            raise BadRequest("software_type must be a string")
        return cls(version, from_version, cohort_slug, typ, percent, software_type)


async def _activate(conn, project_id: int, cohort, release_id: int, typ: str, percent: int | None,
                    actor: str) -> tuple[int, bool, list[str]]:
    """Create or change the activation; returns (id, created, mirror messages)."""
    messages = [f"project:{project_id}"]
    existing = await deployments_store.active_activation(conn, release_id, cohort["id"])
    after = {"type": typ, "rollout_percent": percent}
    if existing is None:
        aid = await deployments_store.create_activation(conn, project_id, release_id, cohort["id"], type_=typ,
                                            rollout_percent=percent, actor=actor)
        await deployments_store.activation_event(conn, project_id, aid, "activate", actor, None, after)
    else:
        aid = existing["id"]
        before = {"type": existing["type"], "rollout_percent": existing["rollout_percent"]}
        await deployments_store.update_activation(conn, aid, type_=typ, rollout_percent=percent)
        await deployments_store.activation_event(conn, project_id, aid, "update", actor, before, after)
    if typ == "staged_rollout" and (existing is None or existing["rollout_percent"] != percent):
        await deployments_store.stage_cohort(conn, cohort["id"], percent)
        msg = f"cohort-devices:{project_id}:{cohort['id']}"
        await db_store.notify(conn, msg)
        messages.append(msg)
    await resolution_store.rebuild_resolution(conn, project_id)
    return aid, existing is None, messages


async def _deactivate(conn, project_id: int, activation, actor: str) -> None:
    await deployments_store.pull_activation(conn, activation["id"], actor)
    await deployments_store.activation_event(conn, project_id, activation["id"], "pull", actor,
                                 {"type": activation["type"], "rollout_percent": activation["rollout_percent"]},
                                 None)
    await resolution_store.rebuild_resolution(conn, project_id)


async def list_deployments(ctx: Context, *, cohort: str | None = None, release: str | None = None,
                           delta_from: str | None = None, delta_to: str | None = None, delta: bool = False,
                           active_only: bool = False, release_id: int | None = None) -> list[dict]:
    """Activations, newest first. `release` names a full release; with `delta`, `delta_from` and
    `delta_to` name a delta. `release_id` keeps one release's activations."""
    rows = await deployments_store.list_activations(
        ctx.pool, ctx.pid, cohort=cohort or None, version=delta_to if delta else (release or None),
        from_version=delta_from, delta=delta)
    if not delta and release:
        rows = [r for r in rows if r["from_version"] is None]
    if active_only:
        rows = [r for r in rows if r["status"] == "active"]
    if release_id is not None:
        rows = [r for r in rows if r["release_id"] == release_id]
    return [deployment_json(r) for r in rows]


async def activate(ctx: Context, spec: ActivationSpec) -> Change:
    """Activate a release in a cohort (or change its rollout percentage). In a cohort that
    requires approval this only files a request (`pending`)."""
    ctx.ident.require("editor")
    async with ctx.transaction() as conn:
        cohort = await fleet_store.cohort_by_slug(conn, ctx.pid, spec.cohort)
        if cohort is None:
            raise NotFound(f"cohort {spec.cohort!r} not found")
        rel = await one_release(conn, ctx.pid, spec.version, spec.from_version, spec.software_type)
        params = {"release_id": rel["id"], "cohort_id": cohort["id"], "type": spec.type,
                  "rollout_percent": spec.rollout_percent}
        change = await _apply_activate(ctx, conn, params, ctx.ident.actor, False)
    await ctx.refresh(*change.messages)
    return change


@applier("activate")
async def _apply_activate(ctx: Context, conn, p: dict, actor: str, approved: bool) -> Change:
    pid = ctx.pid
    cohort = await fleet_store.cohort_by_id(conn, pid, p["cohort_id"])
    existing = await deployments_store.active_activation(conn, p["release_id"], p["cohort_id"])
    rel = (await releases_store.releases_with_payloads(conn, pid, release_id=p["release_id"]))
    if not rel or cohort is None:
        raise Conflict("the release or cohort of this activation no longer exists")
    pending = await protect.guard(
        ctx, conn, [cohort], "activate", approved=approved, release_id=p["release_id"], type_=p["type"],
        rollout_percent=p["rollout_percent"], activation_id=existing["id"] if existing else None,
        summary={"release": rel[0]["version"], "from_version": rel[0]["from_version"], "cohort": cohort["slug"],
                 "type": p["type"], "rollout_percent": p["rollout_percent"]})
    if pending:
        return pending
    aid, created, messages = await _activate(conn, pid, cohort, p["release_id"], p["type"], p["rollout_percent"],
                                             actor)
    row = (await deployments_store.list_activations(conn, pid, activation_id=aid))[0]
    if not approved:
        await insight_store.audit(conn, pid, actor, "deployment.create" if created else "deployment.update",
                          f"deployment:{aid}", None, deployment_json(row))
    return Change(deployment_json(row), created=created, messages=tuple(messages))


async def get_deployment(ctx: Context, aid: int) -> dict:
    rows = await deployments_store.list_activations(ctx.pool, ctx.pid, activation_id=aid)
    if not rows:
        raise NotFound(f"deployment {aid} not found")
    return deployment_json(rows[0])


async def deactivate(ctx: Context, aid: int) -> Change:
    """Pull (deactivate, "abort") an activation; only a request in a cohort that requires approval."""
    return await protect.run(ctx, "deactivate", {"activation_id": aid})


@applier("deactivate")
async def _apply_deactivate(ctx: Context, conn, p: dict, actor: str, approved: bool) -> Change:
    pid, aid = ctx.pid, p["activation_id"]
    rows = await deployments_store.list_activations(conn, pid, activation_id=aid)
    if not rows:
        raise NotFound(f"deployment {aid} not found")
    act = rows[0]
    if act["status"] != "active":
        raise Conflict(f"deployment {aid} is already deactivated" if not approved
                       else "the deployment to deactivate is no longer active")
    cohort = await fleet_store.cohort_by_id(conn, pid, act["cohort_id"])
    pending = await protect.guard(ctx, conn, [cohort], "deactivate", approved=approved,
                                  release_id=act["release_id"], type_=act["type"],
                                  rollout_percent=act["rollout_percent"], activation_id=aid,
                                  summary={"deactivate": aid})
    if pending:
        return pending
    await _deactivate(conn, pid, act, actor)
    if not approved:
        await insight_store.audit(conn, pid, actor, "deployment.deactivate", f"deployment:{aid}", deployment_json(act), None)
    row = (await deployments_store.list_activations(conn, pid, activation_id=aid))[0]
    return Change(deployment_json(row), messages=(f"project:{pid}",))


async def list_requests(ctx: Context, status: str = "pending") -> list[dict]:
    if status not in ("pending", "approved", "rejected", "all"):
        raise BadRequest("status must be pending, approved, rejected or all")
    rows = await store_requests.list_requests(ctx.pool, ctx.pid, status=None if status == "all" else status)
    return [request_json(r) for r in rows]


def _request_params(req) -> dict:
    """What an approved request carries out: its stored params, or (activations filed before
    params existed, and activations now) the typed columns."""
    if req["params"] is not None and req["action"] not in ("activate", "deactivate"):
        return req["params"]
    if req["action"] == "activate":
        return {"release_id": req["release_id"], "cohort_id": req["cohort_id"], "type": req["type"],
                "rollout_percent": req["rollout_percent"]}
    return {"activation_id": req["activation_id"]}


async def decide(ctx: Context, rid: int, approve: bool) -> dict:
    """Approve (and carry out) or reject a pending request; never by the identity that filed it,
    and only by one allowed to make the change itself."""
    ident, pid = ctx.ident, ctx.pid
    ident.require("editor")
    messages: tuple[str, ...] = ()
    async with ctx.transaction() as conn:
        rows = await store_requests.list_requests(conn, pid, request_id=rid, for_update=True)
        if not rows:
            raise NotFound(f"activation request {rid} not found")
        req = rows[0]
        if req["status"] != "pending":
            raise Conflict(f"activation request {rid} is already {req['status']}")
        if req["requested_by"] == ident.actor:
            raise Forbidden("an activation request must be approved or rejected by a different identity")
        cohort = await fleet_store.cohort_by_id(conn, pid, req["cohort_id"])
        if not protect.may_change(ident, cohort):
            raise Forbidden(f"cohort {cohort['slug']!r} is protected: deciding its requests needs the manager role "
                            "or a token allowed to activate protected cohorts")
        if approve:
            run = protect.APPLIERS.get(req["action"])
            if run is None:
                raise Conflict(f"activation request {rid} is of an unknown kind {req['action']!r}")
            change = await run(ctx, conn, _request_params(req), f"{req['requested_by']} (approved by {ident.actor})",
                               True)
            messages = change.messages
        await store_requests.decide(conn, rid, "approved" if approve else "rejected", ident.actor)
        await insight_store.audit(conn, pid, ident.actor, "deployment.approve" if approve else "deployment.reject",
                          f"request:{rid}", {"status": "pending"}, {"status": "approved" if approve else "rejected"})
        req = (await store_requests.list_requests(conn, pid, request_id=rid))[0]
    if messages:
        await ctx.refresh(*messages)
    return request_json(req)


async def activation_history(ctx: Context, *, limit: int = 500, offset: int = 0) -> list[dict]:
    rows = await deployments_store.list_activation_events(ctx.pool, ctx.pid, limit=limit, offset=offset)
    return [{"deployment_id": r["activation_id"], "action": r["action"], "actor": r["actor"],
             "release": r["version"], "delta_from": r["from_version"], "software_type": r["software_type"],
             "cohort": r["cohort_slug"], "before": r["before"], "after": r["after"], "date": iso(r["at"])}
            for r in rows]
