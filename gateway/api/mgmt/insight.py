"""Read-only insight for release managers over REST: the per-cohort version matrix, "inspect
device" (what it gets on each protocol and why) and the audit log. The logic lives in
services.insight, over the same mirrored decision tables as the poll path."""
from __future__ import annotations

from aiohttp import web

from gateway.api.mgmt.auth import context_for
from gateway.api.mgmt.common import P, data
from gateway.domain.fields import MAX_ID, parse_int
from gateway.http.errors import add_route
from gateway.services import insight


async def version_matrix(request: web.Request) -> web.Response:
    """GET cohorts/{slug}/version-matrix?software_type=…"""
    ctx = await context_for(request)
    return data(await insight.version_matrix(ctx, request.match_info["cohort"],
                                             request.query.get("software_type")))


async def inspect_device(request: web.Request) -> web.Response:
    """GET devices/{serial}/inspect[?software_type=&current_version=&hardware_version=]:
    what the device would get now on each protocol, the reason and every rule considered."""
    ctx = await context_for(request)
    q = request.query
    return data(await insight.inspect_device(ctx, request.match_info["serial"], software_type=q.get("software_type"),
                                             current_version=q.get("current_version"),
                                             hardware_version=q.get("hardware_version")))


async def audit_log(request: web.Request) -> web.Response:
    """GET audit-log?actor=&action=&limit=&before=<id> — newest first, append-only."""
    ctx = await context_for(request)
    q = request.query
    limit = min(parse_int(q.get("limit"), "limit", default=100, lo=0, hi=MAX_ID), 1000)
    before = parse_int(q.get("before"), "before", default=None, lo=0, hi=MAX_ID)
    return data(await insight.audit_log(ctx, actor=q.get("actor"), action=q.get("action"), limit=limit,
                                        before=before))


def setup(app: web.Application) -> None:
    add_route(app, "GET", P + "/cohorts/{cohort}/version-matrix", version_matrix)
    add_route(app, "GET", P + "/devices/{serial}/inspect", inspect_device)
    add_route(app, "GET", P + "/audit-log", audit_log)
