"""The dashboard's read-only pages: projects, releases, cohorts and the version matrix, approval
requests, devices (with what they get next and why), the audit log; its static files and its
404. Each reads only through `gateway.services` (the same functions as the REST API), so roles
and project scoping are the API's own."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlencode

from aiohttp import web

from gateway.appkeys import RESOURCES
from gateway.domain.errors import BadRequest, NotFound
from gateway.domain.fields import parse_int
from gateway.services import (
    approvals,
    deployments,
    fleet,
    insight,
    list_projects,
    releases,
)
from gateway.services import ddi as ddi_svc
from gateway.ui import session
from gateway.ui.context import number, page_context
from gateway.ui.render import UI, redirect, render

STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}


async def home(request: web.Request):
    """GET /ui/: the organization's projects (straight to the only one)."""
    sess = await session.current(request)
    projects = await list_projects(request.config_dict[RESOURCES], sess.ident)
    if len(projects) == 1:
        return redirect(f"/ui/p/{quote(projects[0]['slug'])}/releases")
    return render(request, "projects.html", sess, projects=projects)


async def project_home(request: web.Request):
    await page_context(request)
    return redirect(f"/ui/p/{quote(request.match_info['project'])}/releases")


async def releases_page(request: web.Request):
    sess, ctx = await page_context(request)
    q = request.query
    rows = await releases.list_releases(ctx, software_type=q.get("software_type"),
                                        hardware_version=q.get("hardware_version"))
    return render(request, "releases.html", sess, project=ctx.project, nav="releases", releases=rows,
                  software_types=await releases.software_types(ctx), filters=q)


def _cohort_choices(ident, cohorts: list[dict]) -> list[dict]:
    return [{**c, "may_change": deployments.may_change(ident, c)} for c in cohorts]


async def release_page(request: web.Request):
    sess, ctx = await page_context(request)
    rel = await releases.get_release(ctx, str(number(request.match_info["release"], "release")))
    acts = await deployments.list_deployments(ctx, release_id=rel["id"])
    stats = next((s for s in await ddi_svc.release_stats(ctx) if s["release_id"] == rel["id"]), None)
    cohorts = await fleet.list_cohorts(ctx)
    by_slug = {c["slug"]: c for c in _cohort_choices(sess.ident, cohorts)}
    by_hw: dict[str, list] = {}
    for a in rel["artifacts"]:
        by_hw.setdefault(a["hardware_version"], []).append(a)
    return render(request, "release.html", sess, project=ctx.project, nav="releases", release=rel,
                  payloads=sorted(by_hw.items()), deployments=acts, ddi=stats, cohorts=list(by_slug.values()),
                  cohort_by_slug=by_slug, statuses=ddi_svc.ACTION_STATUSES)


async def cohorts_page(request: web.Request):
    sess, ctx = await page_context(request)
    return render(request, "cohorts.html", sess, project=ctx.project, nav="cohorts",
                  cohorts=await fleet.list_cohorts(ctx))


async def matrix_page(request: web.Request):
    """The version matrix: rows = current version, columns = what a poll answers next."""
    sess, ctx = await page_context(request)
    slug = request.match_info["cohort"]
    cohort = await fleet.get_cohort(ctx, slug)
    types = await releases.software_types(ctx)
    sw = request.query.get("software_type") or None
    try:
        m = await insight.version_matrix(ctx, slug, sw)
    except BadRequest as e:
        if sw:  # a bad explicit choice is an error; a missing one is a question for the user
            raise
        m, choose = None, e.message
    else:
        choose = ""
    cols = []
    if m:
        for c in m["columns"]:
            marks = [r for r in m["active_releases"] if r["version"] == c]
            cols.append({"version": c, "marks": marks, "target": c == m["target_version"],
                         "staged_target": c == m["staged_target_version"]})
    return render(request, "matrix.html", sess, project=ctx.project, nav="cohorts", cohort=cohort,
                  may_change=deployments.may_change(sess.ident, cohort), matrix=m, columns=cols,
                  software_types=types, software_type=(m or {}).get("software_type") or sw or "", choose=choose)


async def requests_page(request: web.Request):
    sess, ctx = await page_context(request)
    status = request.query.get("status", "pending")
    return render(request, "requests.html", sess, project=ctx.project, nav="requests", req_status=status,
                  requests=await approvals.list_requests(ctx, status))


async def devices_page(request: web.Request):
    sess, ctx = await page_context(request)
    q = request.query
    serial = q.get("serial", "").strip()
    page_no = parse_int(q.get("page"), "page", default=1, lo=1, hi=1_000_000, clamp=True)
    total, rows = await fleet.list_devices(ctx, cohort=q.get("cohort"), hardware_version=q.get("hardware_version"),
                                           serial_prefix=serial, limit=50, page=page_no)
    if serial and any(d["device_serial"] == serial for d in rows) and total == 1:
        return redirect(f"/ui/p/{quote(ctx.project['slug'])}/devices/{quote(serial, safe='')}")
    return render(request, "devices.html", sess, project=ctx.project, nav="devices", devices=rows, total=total,
                  page=page_no, pages=max(1, -(-total // 50)), filters=q, cohorts=await fleet.list_cohorts(ctx))


async def device_page(request: web.Request):
    """A device: what it gets next on each protocol and why, its history and DDI actions."""
    sess, ctx = await page_context(request)
    serial = request.match_info["serial"]
    dev = await fleet.get_device(ctx, serial)
    inspected = await insight.inspect_device(ctx, serial)
    history = await fleet.device_history(ctx, serial, limit=50)
    actions = await ddi_svc.device_actions(ctx, serial)
    ddi_info = await ddi_svc.device_ddi(ctx, serial)
    return render(request, "device.html", sess, project=ctx.project, nav="devices", device=dev,
                  inspect=inspected, history=history, actions=actions, ddi=ddi_info)


async def audit_page(request: web.Request):
    sess, ctx = await page_context(request)
    q = request.query
    before = q.get("before", "")
    rows = await insight.audit_log(ctx, actor=q.get("actor"), action=q.get("action"), limit=50,
                                   before=number(before, "audit page") if before else None)
    older = None
    if len(rows) == 50:
        older = urlencode({**{k: v for k, v in q.items() if k in ("actor", "action") and v},
                           "before": rows[-1]["id"]})
    return render(request, "audit.html", sess, project=ctx.project, nav="audit", entries=rows, filters=q,
                  older=older)


def static_files(folder: Path):
    """The handler of the dashboard's static files, read once from `folder`."""
    files = {p.name: (p.read_bytes(), STATIC_TYPES[p.suffix]) for p in folder.iterdir() if p.suffix in STATIC_TYPES}

    async def static(request: web.Request) -> web.Response:
        hit = files.get(request.match_info["name"])
        if hit is None:
            raise NotFound(f"no static file {request.match_info['name']!r}")
        return web.Response(body=hit[0], content_type=hit[1], charset="utf-8",
                            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})
    return static


async def ui_not_found(request: web.Request):
    raise NotFound(f"no page at {request.path}")


async def ui_root(request: web.Request):
    return redirect(UI)
