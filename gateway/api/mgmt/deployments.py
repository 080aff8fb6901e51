"""Deployments (release activations) over REST: activate, change a staged rollout, pull;
approval requests; activation history. The logic lives in services.deployments.

memfault-cli's `deploy-release` drives POST/GET/DELETE deployments; any answer below 400 is a
success for it, so a change waiting for approval answers 202.
"""
from __future__ import annotations

from aiohttp import web

from gateway.api.mgmt.auth import context_for
from gateway.api.mgmt.common import PREVIEW_FIELDS, P, body_json, data, preview_args
from gateway.domain.fields import parse_id
from gateway.http.errors import add_route, json_response
from gateway.services import Change, approvals
from gateway.services import deployments as svc


def _answer(change: Change) -> web.Response:
    if change.pending:
        return json_response({"data": change.data}, status=202)
    return data(change.data, status=201 if change.created else 200)


def _int_id(request: web.Request, what: str) -> int:
    return parse_id(request.match_info["id"], what)


async def list_deployments(request: web.Request) -> web.Response:
    ctx = await context_for(request)
    q = request.query
    delta = "delta_from" in q or "delta_to" in q
    return data(await svc.list_deployments(ctx, cohort=q.get("cohort"), release=q.get("release"),
                                           delta_from=q.get("delta_from"), delta_to=q.get("delta_to"),
                                           delta=delta, active_only=q.get("status") == "active"))


async def create_deployment(request: web.Request) -> web.Response:
    """POST P/deployments {type, release, cohort, rollout_percent}: activate a release (or change
    its rollout percentage); 202 with a pending request when the cohort requires approval."""
    ctx = await context_for(request)
    # what memfault-cli's deploy-release sends, plus our software_type (to name one release of
    # a version that exists for several software types)
    body = await body_json(request, {"type": None, "release": None, "cohort": None, "rollout_percent": None,
                                     "software_type": None, "stage_newcomers": None, **PREVIEW_FIELDS})
    return _answer(await svc.activate(ctx, svc.ActivationSpec.parse(body), **preview_args(body)))


async def delete_deployment(request: web.Request) -> web.Response:
    """DELETE P/deployments/{id}[?dry_run=true | ?preview_token=…]: pull (deactivate) an activation."""
    ctx = await context_for(request)
    body = await body_json(request, PREVIEW_FIELDS)
    preview = preview_args(body or request.query)
    return _answer(await svc.deactivate(ctx, _int_id(request, "deployment"), **preview))


async def list_requests(request: web.Request) -> web.Response:
    ctx = await context_for(request)
    return data(await approvals.list_requests(ctx, request.query.get("status", "pending")))


async def approve_request(request: web.Request) -> web.Response:
    ctx = await context_for(request)
    await body_json(request, {})
    return data(await approvals.decide(ctx, _int_id(request, "request"), True))


async def reject_request(request: web.Request) -> web.Response:
    ctx = await context_for(request)
    await body_json(request, {})
    return data(await approvals.decide(ctx, _int_id(request, "request"), False))


async def list_activation_history(request: web.Request) -> web.Response:
    ctx = await context_for(request)
    return data(await svc.activation_history(ctx))


def setup(app: web.Application) -> None:
    add_route(app, "GET", P + "/deployments", list_deployments)
    add_route(app, "POST", P + "/deployments", create_deployment)
    add_route(app, "DELETE", P + "/deployments/{id}", delete_deployment)
    add_route(app, "GET", P + "/deployment-history", list_activation_history)
    add_route(app, "GET", P + "/activation-requests", list_requests)
    add_route(app, "POST", P + "/activation-requests/{id}/approve", approve_request)
    add_route(app, "POST", P + "/activation-requests/{id}/reject", reject_request)
