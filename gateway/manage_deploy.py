"""Deployments (release activations): activate, change a staged rollout, pull; protected
cohorts; approval requests; activation history.

memfault-cli's `deploy-release` drives POST/GET/DELETE deployments; any answer below 400 is a
success for it, so a change waiting for approval answers 202.
"""
from __future__ import annotations

from aiohttp import web

from . import store
from .appkeys import POOL
from .errors import ApiError, BadRequest, Conflict, Forbidden, NotFound, add_route, json_response
from .manage_auth import Identity, project_for
from .manage_common import P, body_json, data, iso, need_str, one_release, refresh


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


def check_may_change(ident: Identity, cohort) -> None:
    """Protected cohorts take activation changes only from managers or flagged tokens."""
    if cohort["protected"] and not (ident.role == "manager" or ident.can_activate_protected):
        raise Forbidden(f"cohort {cohort['slug']!r} is protected: activation changes need the manager role "
                        "or a token allowed to activate protected cohorts")


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


def _parse_deployment(body: dict) -> tuple[str, str | None, str, str, int | None, str | None]:
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
    return version, from_version, cohort_slug, typ, percent, software_type


async def list_deployments(request: web.Request) -> web.Response:
    _, p = await project_for(request)
    q = request.query
    delta = "delta_from" in q or "delta_to" in q
    rows = await store.list_activations(
        request.app[POOL], p["id"], cohort=q.get("cohort") or None,
        version=q.get("delta_to") if delta else (q.get("release") or None),
        from_version=q.get("delta_from"), delta=delta)
    if not delta and q.get("release"):
        rows = [r for r in rows if r["from_version"] is None]
    if q.get("status") == "active":
        rows = [r for r in rows if r["status"] == "active"]
    return data([deployment_json(r) for r in rows])


async def create_deployment(request: web.Request) -> web.Response:
    """POST P/deployments {type, release, cohort, rollout_percent}: activate a release (or change
    its rollout percentage); 202 with a pending request when the cohort requires approval."""
    ident, p = await project_for(request)
    version, from_version, cohort_slug, typ, percent, software_type = _parse_deployment(await body_json(request))
    async with request.app[POOL].acquire() as conn, conn.transaction():
        cohort = await store.cohort_by_slug(conn, p["id"], cohort_slug)
        if cohort is None:
            raise NotFound(f"cohort {cohort_slug!r} not found")
        check_may_change(ident, cohort)
        rel = await one_release(conn, p["id"], version, from_version, software_type)
        if cohort["requires_approval"]:
            existing = await store.active_activation(conn, rel["id"], cohort["id"])
            row = await store.create_activation_request(
                conn, p["id"], cohort_id=cohort["id"], release_id=rel["id"], action="activate", type_=typ,
                rollout_percent=percent, activation_id=existing["id"] if existing else None, actor=ident.actor)
            await store.audit(conn, p["id"], ident.actor, "deployment.request", f"request:{row['id']}", None,
                              {"release": version, "from_version": from_version, "cohort": cohort_slug,
                               "type": typ, "rollout_percent": percent})
            req = (await store.activation_requests(conn, p["id"], request_id=row["id"]))[0]
            return json_response({"data": request_json(req)}, status=202)
        aid, created, messages = await _activate(conn, p["id"], cohort, rel["id"], typ, percent, ident.actor)
        row = (await store.list_activations(conn, p["id"], activation_id=aid))[0]
        await store.audit(conn, p["id"], ident.actor, "deployment.create" if created else "deployment.update",
                          f"deployment:{aid}", None, deployment_json(row))
    await refresh(request, *messages)
    return data(deployment_json(row), status=201 if created else 200)


async def delete_deployment(request: web.Request) -> web.Response:
    """DELETE P/deployments/{id}: pull (deactivate) an activation."""
    ident, p = await project_for(request)
    try:
        aid = int(request.match_info["id"])
    except ValueError:
        raise NotFound("deployment not found") from None
    async with request.app[POOL].acquire() as conn, conn.transaction():
        rows = await store.list_activations(conn, p["id"], activation_id=aid)
        if not rows:
            raise NotFound(f"deployment {aid} not found")
        act = rows[0]
        if act["status"] != "active":
            raise Conflict(f"deployment {aid} is already deactivated")
        cohort = await store.cohort_by_slug(conn, p["id"], act["cohort_slug"])
        check_may_change(ident, cohort)
        if cohort["requires_approval"]:
            row = await store.create_activation_request(
                conn, p["id"], cohort_id=cohort["id"], release_id=act["release_id"], action="deactivate",
                type_=act["type"], rollout_percent=act["rollout_percent"], activation_id=aid, actor=ident.actor)
            await store.audit(conn, p["id"], ident.actor, "deployment.request", f"request:{row['id']}", None,
                              {"deactivate": aid})
            req = (await store.activation_requests(conn, p["id"], request_id=row["id"]))[0]
            return json_response({"data": request_json(req)}, status=202)
        await _deactivate(conn, p["id"], act, ident.actor)
        await store.audit(conn, p["id"], ident.actor, "deployment.deactivate", f"deployment:{aid}",
                          deployment_json(act), None)
        row = (await store.list_activations(conn, p["id"], activation_id=aid))[0]
    await refresh(request, f"project:{p['id']}")
    return data(deployment_json(row))


# -- approvals -------------------------------------------------------------------------------------

async def list_requests(request: web.Request) -> web.Response:
    _, p = await project_for(request)
    status = request.query.get("status", "pending")
    if status not in ("pending", "approved", "rejected", "all"):
        raise BadRequest("status must be pending, approved, rejected or all")
    rows = await store.activation_requests(request.app[POOL], p["id"], status=None if status == "all" else status)
    return data([request_json(r) for r in rows])


async def _decide(request: web.Request, approve: bool) -> web.Response:
    ident, p = await project_for(request)
    try:
        rid = int(request.match_info["id"])
    except ValueError:
        raise NotFound("request not found") from None
    messages: list[str] = []
    async with request.app[POOL].acquire() as conn, conn.transaction():
        rows = await store.activation_requests(conn, p["id"], request_id=rid, for_update=True)
        if not rows:
            raise NotFound(f"activation request {rid} not found")
        req = rows[0]
        if req["status"] != "pending":
            raise Conflict(f"activation request {rid} is already {req['status']}")
        if req["requested_by"] == ident.actor:
            raise Forbidden("an activation request must be approved or rejected by a different identity")
        cohort = await store.cohort_by_slug(conn, p["id"], req["cohort_slug"])
        check_may_change(ident, cohort)
        if approve:
            if req["action"] == "activate":
                _, _, messages = await _activate(conn, p["id"], cohort, req["release_id"], req["type"],
                                                 req["rollout_percent"], f"{req['requested_by']} (approved by "
                                                 f"{ident.actor})")
            else:
                act = (await store.list_activations(conn, p["id"], activation_id=req["activation_id"]))
                if not act or act[0]["status"] != "active":
                    raise ApiError("the deployment to deactivate is no longer active", status=409, type="conflict")
                await _deactivate(conn, p["id"], act[0], f"{req['requested_by']} (approved by {ident.actor})")
                messages = [f"project:{p['id']}"]
        await store.decide_activation_request(conn, rid, "approved" if approve else "rejected", ident.actor)
        await store.audit(conn, p["id"], ident.actor, "deployment.approve" if approve else "deployment.reject",
                          f"request:{rid}", {"status": "pending"}, {"status": "approved" if approve else "rejected"})
        req = (await store.activation_requests(conn, p["id"], request_id=rid))[0]
    if messages:
        await refresh(request, *messages)
    return data(request_json(req))


async def approve_request(request: web.Request) -> web.Response:
    return await _decide(request, True)


async def reject_request(request: web.Request) -> web.Response:
    return await _decide(request, False)


async def list_activation_history(request: web.Request) -> web.Response:
    _, p = await project_for(request)
    rows = await store.list_activation_events(request.app[POOL], p["id"], limit=500, offset=0)
    return data([{"deployment_id": r["activation_id"], "action": r["action"], "actor": r["actor"],
                  "release": r["version"], "delta_from": r["from_version"], "software_type": r["software_type"],
                  "cohort": r["cohort_slug"], "before": r["before"], "after": r["after"], "date": iso(r["at"])}
                 for r in rows])


def setup(app: web.Application) -> None:
    add_route(app, "GET", P + "/deployments", list_deployments)
    add_route(app, "POST", P + "/deployments", create_deployment)
    add_route(app, "DELETE", P + "/deployments/{id}", delete_deployment)
    add_route(app, "GET", P + "/deployment-history", list_activation_history)
    add_route(app, "GET", P + "/activation-requests", list_requests)
    add_route(app, "POST", P + "/activation-requests/{id}/approve", approve_request)
    add_route(app, "POST", P + "/activation-requests/{id}/reject", reject_request)
