"""Deployments (release activations): activate, change a staged rollout, pull; protected cohorts;
approval requests; activation history."""
from __future__ import annotations

from dataclasses import dataclass

from .. import store
from ..errors import ApiError, BadRequest, Conflict, Forbidden, NotFound
from ..manage_auth import Identity
from ..manage_common import iso, need_str, one_release
from . import Change, Context


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


def request_json(q) -> dict:
    return {"id": q["id"], "action": q["action"], "status": q["status"], "cohort": q["cohort_slug"],
            "release": {"id": q["release_id"], "version": q["version"], "delta_from": q["from_version"],
                        "software_type": q["software_type"]},
            "type": q["type"], "rollout_percent": q["rollout_percent"], "deployment_id": q["activation_id"],
            "requested_by": q["requested_by"], "decided_by": q["decided_by"],
            "created_date": iso(q["created_at"]), "decided_date": iso(q["decided_at"])}


def may_change(ident: Identity, cohort) -> bool:
    """Protected cohorts take activation changes only from managers or flagged tokens."""
    return not cohort["protected"] or ident.role == "manager" or ident.can_activate_protected


def check_may_change(ident: Identity, cohort) -> None:
    if not may_change(ident, cohort):
        raise Forbidden(f"cohort {cohort['slug']!r} is protected: activation changes need the manager role "
                        "or a token allowed to activate protected cohorts")


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
    existing = await store.active_activation(conn, release_id, cohort["id"])
    after = {"type": typ, "rollout_percent": percent}
    if existing is None:
        aid = await store.create_activation(conn, project_id, release_id, cohort["id"], type_=typ,
                                            rollout_percent=percent, actor=actor)
        await store.activation_event(conn, project_id, aid, "activate", actor, None, after)
    else:
        aid = existing["id"]
        before = {"type": existing["type"], "rollout_percent": existing["rollout_percent"]}
        await store.update_activation(conn, aid, type_=typ, rollout_percent=percent)
        await store.activation_event(conn, project_id, aid, "update", actor, before, after)
    if typ == "staged_rollout" and (existing is None or existing["rollout_percent"] != percent):
        await store.stage_cohort(conn, cohort["id"], percent)
        msg = f"cohort-devices:{project_id}:{cohort['id']}"
        await store.notify(conn, msg)
        messages.append(msg)
    await store.rebuild_resolution(conn, project_id)
    return aid, existing is None, messages


async def _deactivate(conn, project_id: int, activation, actor: str) -> None:
    await store.pull_activation(conn, activation["id"], actor)
    await store.activation_event(conn, project_id, activation["id"], "pull", actor,
                                 {"type": activation["type"], "rollout_percent": activation["rollout_percent"]},
                                 None)
    await store.rebuild_resolution(conn, project_id)


async def list_deployments(ctx: Context, *, cohort: str | None = None, release: str | None = None,
                           delta_from: str | None = None, delta_to: str | None = None, delta: bool = False,
                           active_only: bool = False, release_id: int | None = None) -> list[dict]:
    """Activations, newest first. `release` names a full release; with `delta`, `delta_from` and
    `delta_to` name a delta. `release_id` keeps one release's activations."""
    rows = await store.list_activations(
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
    ident, pid = ctx.ident, ctx.pid
    ident.require("editor")
    async with ctx.pool.acquire() as conn, conn.transaction():
        cohort = await store.cohort_by_slug(conn, pid, spec.cohort)
        if cohort is None:
            raise NotFound(f"cohort {spec.cohort!r} not found")
        check_may_change(ident, cohort)
        rel = await one_release(conn, pid, spec.version, spec.from_version, spec.software_type)
        if cohort["requires_approval"]:
            existing = await store.active_activation(conn, rel["id"], cohort["id"])
            row = await store.create_activation_request(
                conn, pid, cohort_id=cohort["id"], release_id=rel["id"], action="activate", type_=spec.type,
                rollout_percent=spec.rollout_percent, activation_id=existing["id"] if existing else None,
                actor=ident.actor)
            await store.audit(conn, pid, ident.actor, "deployment.request", f"request:{row['id']}", None,
                              {"release": spec.version, "from_version": spec.from_version, "cohort": spec.cohort,
                               "type": spec.type, "rollout_percent": spec.rollout_percent})
            req = (await store.activation_requests(conn, pid, request_id=row["id"]))[0]
            return Change(request_json(req), pending=True)
        aid, created, messages = await _activate(conn, pid, cohort, rel["id"], spec.type, spec.rollout_percent,
                                                 ident.actor)
        row = (await store.list_activations(conn, pid, activation_id=aid))[0]
        await store.audit(conn, pid, ident.actor, "deployment.create" if created else "deployment.update",
                          f"deployment:{aid}", None, deployment_json(row))
    await ctx.refresh(*messages)
    return Change(deployment_json(row), created=created)


async def get_deployment(ctx: Context, aid: int) -> dict:
    rows = await store.list_activations(ctx.pool, ctx.pid, activation_id=aid)
    if not rows:
        raise NotFound(f"deployment {aid} not found")
    return deployment_json(rows[0])


async def deactivate(ctx: Context, aid: int) -> Change:
    """Pull (deactivate, "abort") an activation; only a request in a cohort that requires approval."""
    ident, pid = ctx.ident, ctx.pid
    ident.require("editor")
    async with ctx.pool.acquire() as conn, conn.transaction():
        rows = await store.list_activations(conn, pid, activation_id=aid)
        if not rows:
            raise NotFound(f"deployment {aid} not found")
        act = rows[0]
        if act["status"] != "active":
            raise Conflict(f"deployment {aid} is already deactivated")
        cohort = await store.cohort_by_slug(conn, pid, act["cohort_slug"])
        check_may_change(ident, cohort)
        if cohort["requires_approval"]:
            row = await store.create_activation_request(
                conn, pid, cohort_id=cohort["id"], release_id=act["release_id"], action="deactivate",
                type_=act["type"], rollout_percent=act["rollout_percent"], activation_id=aid, actor=ident.actor)
            await store.audit(conn, pid, ident.actor, "deployment.request", f"request:{row['id']}", None,
                              {"deactivate": aid})
            req = (await store.activation_requests(conn, pid, request_id=row["id"]))[0]
            return Change(request_json(req), pending=True)
        await _deactivate(conn, pid, act, ident.actor)
        await store.audit(conn, pid, ident.actor, "deployment.deactivate", f"deployment:{aid}",
                          deployment_json(act), None)
        row = (await store.list_activations(conn, pid, activation_id=aid))[0]
    await ctx.refresh(f"project:{pid}")
    return Change(deployment_json(row))


async def list_requests(ctx: Context, status: str = "pending") -> list[dict]:
    if status not in ("pending", "approved", "rejected", "all"):
        raise BadRequest("status must be pending, approved, rejected or all")
    rows = await store.activation_requests(ctx.pool, ctx.pid, status=None if status == "all" else status)
    return [request_json(r) for r in rows]


async def decide(ctx: Context, rid: int, approve: bool) -> dict:
    """Approve (and carry out) or reject a pending request; never by the identity that filed it."""
    ident, pid = ctx.ident, ctx.pid
    ident.require("editor")
    messages: list[str] = []
    async with ctx.pool.acquire() as conn, conn.transaction():
        rows = await store.activation_requests(conn, pid, request_id=rid, for_update=True)
        if not rows:
            raise NotFound(f"activation request {rid} not found")
        req = rows[0]
        if req["status"] != "pending":
            raise Conflict(f"activation request {rid} is already {req['status']}")
        if req["requested_by"] == ident.actor:
            raise Forbidden("an activation request must be approved or rejected by a different identity")
        cohort = await store.cohort_by_slug(conn, pid, req["cohort_slug"])
        check_may_change(ident, cohort)
        if approve:
            by = f"{req['requested_by']} (approved by {ident.actor})"
            if req["action"] == "activate":
                _, _, messages = await _activate(conn, pid, cohort, req["release_id"], req["type"],
                                                 req["rollout_percent"], by)
            else:
                act = (await store.list_activations(conn, pid, activation_id=req["activation_id"]))
                if not act or act[0]["status"] != "active":
                    raise ApiError("the deployment to deactivate is no longer active", status=409, type="conflict")
                await _deactivate(conn, pid, act[0], by)
                messages = [f"project:{pid}"]
        await store.decide_activation_request(conn, rid, "approved" if approve else "rejected", ident.actor)
        await store.audit(conn, pid, ident.actor, "deployment.approve" if approve else "deployment.reject",
                          f"request:{rid}", {"status": "pending"}, {"status": "approved" if approve else "rejected"})
        req = (await store.activation_requests(conn, pid, request_id=rid))[0]
    if messages:
        await ctx.refresh(*messages)
    return request_json(req)


async def activation_history(ctx: Context, *, limit: int = 500, offset: int = 0) -> list[dict]:
    rows = await store.list_activation_events(ctx.pool, ctx.pid, limit=limit, offset=offset)
    return [{"deployment_id": r["activation_id"], "action": r["action"], "actor": r["actor"],
             "release": r["version"], "delta_from": r["from_version"], "software_type": r["software_type"],
             "cohort": r["cohort_slug"], "before": r["before"], "after": r["after"], "date": iso(r["at"])}
            for r in rows]
