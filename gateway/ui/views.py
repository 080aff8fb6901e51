"""Dashboard pages. Each handler reads and writes only through `gateway.services` (the same
functions as the REST API), so roles, protected cohorts, approvals and audit entries are the
API's own. Errors render as HTML pages with the API's status code and message."""
from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote, urlencode

import aiohttp_jinja2
import orjson
from aiohttp import web

from gateway.http.errors import DB_UNAVAILABLE
from gateway.domain.errors import ApiError, BadRequest, Conflict, NotFound, Unauthorized
from gateway.domain.access import ROLES
from gateway.services import Context, deployments, fleet, insight, list_projects, project_context, releases
from gateway.services import ddi as ddi_svc
from gateway.ui import session

log = logging.getLogger(__name__)

UI = "/ui/"
PP = "/ui/p/{project}"
_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}


# -- helpers --------------------------------------------------------------------------------------

def _when(iso: str | None) -> str:
    return "" if not iso else iso[:19].replace("T", " ")


def _size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _json(v) -> str:
    return "" if v is None else orjson.dumps(v, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def _pct(share: float) -> str:
    return f"{share * 100:.0f} %" if share else "–"


# what each reason code of resolution / DDI planning means, for people
REASONS = {
    "delta": "a delta release applies from the current version",
    "must_pass_through": "a must-pass-through release lies between the current version and the target",
    "full": "the newest full release of the cohort is newer than the current version",
    "override": "this device is pinned to a release",
    "latest": "the device already runs the newest release",
    "no_release_for_hardware": "no active release has a payload for this hardware version",
    "no_active_release": "nothing is active for this software type in the cohort",
    "not_staged": "a staged rollout applies, but this device is not in the staged share",
    "cohort_settings": "version checking is off: the cohort's target is offered, even as a downgrade",
    "in_progress": "an action is open and the device has not finished it",
    "canceled_by_server": "the open action is no longer wanted and is cancelled",
    "canceling": "a cancellation is waiting for the device",
    "failed_previously": "the release failed on this device; retry it to offer it again",
    "no_hardware_version": "the device reported no hardware version and the project has no default",
    "no_software_type": "the device reported no software type and the project has no default",
}

FILTERS = {"why": lambda code: REASONS.get(code, ""), "when": _when, "size": _size, "json": _json, "pct": _pct, "q": lambda s: quote(str(s), safe="")}


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _can_edit(ident) -> bool:
    return ROLES[ident.role] >= ROLES["editor"]


def render(request: web.Request, template: str, sess: session.Session | None, status: int = 200, **ctx):
    ctx.setdefault("project", None)
    ctx.setdefault("nav", "")
    ident = sess.ident if sess else None
    return aiohttp_jinja2.render_template(template, request, {
        "ident": ident, "csrf": sess.csrf if sess else "", "can_edit": bool(ident and _can_edit(ident)),
        **ctx}, status=status)


def _secure(resp: web.StreamResponse) -> web.StreamResponse:
    resp.headers.setdefault("Content-Security-Policy", _CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def page(handler):
    """Wrap a page handler: login redirect, HTML error pages with the API's status and message,
    security headers."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except session.LoginRequired:
            if request.method == "GET":
                resp = _redirect("/ui/login?" + urlencode({"next": request.path_qs}))
            else:  # a form posted without a session cannot carry a valid CSRF token
                resp = _error(request, 403, "Your session has expired: log in again.")
        except ApiError as e:
            resp = _error(request, e.status, e.message)
        except DB_UNAVAILABLE as e:
            log.warning("database unavailable on %s %s: %s", request.method, request.path, type(e).__name__)
            resp = _error(request, 503, "The database is unavailable; retry in a moment.")
        except web.HTTPException as e:
            if e.status < 400:
                raise
            resp = _error(request, e.status, e.reason)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            resp = _error(request, 500, "Internal server error.")
        return _secure(resp)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _error(request: web.Request, status: int, message: str) -> web.Response:
    return aiohttp_jinja2.render_template("error.html", request, {
        "ident": None, "csrf": "", "can_edit": False, "project": None, "nav": "", "status": status,
        "message": message}, status=status)


async def _ctx(request: web.Request) -> tuple[session.Session, Context]:
    sess = await session.current(request)
    return sess, await project_context(request.app, sess.ident, request.match_info["project"])


async def _post(request: web.Request) -> tuple[session.Session, Context, dict]:
    """A form POST to a project page: session, context and the form, CSRF-checked first."""
    sess = await session.current(request)
    form = await request.post()
    session.check_csrf(form, sess)
    return sess, await project_context(request.app, sess.ident, request.match_info["project"]), form


def _int(value: str, what: str) -> int:
    if not value.isdigit():
        raise NotFound(f"{what} {value!r} not found")
    return int(value)


# -- login ------------------------------------------------------------------------------------------

async def login_form(request: web.Request, *, status: int = 200, message: str = "", form=None):
    cookie: dict = {}
    token = await session.login_token(request, cookie)
    nxt = (form or request.query).get("next", "")
    resp = render(request, "login.html", None, status=status, login_csrf=token, message=message,
                  next=nxt if _safe_next(nxt) else "", email=(form or {}).get("email", ""))
    resp.set_cookie(cookie.pop("name"), cookie.pop("value"), **cookie)
    return resp


def _safe_next(nxt: str) -> bool:
    return nxt.startswith("/ui/") and not nxt.startswith("//") and "\\" not in nxt


async def login_page(request: web.Request):
    """GET /ui/login."""
    return await login_form(request)


async def login(request: web.Request):
    """POST /ui/login: an org token, or a user's email and secret."""
    form = await request.post()
    await session.check_login_csrf(request, form)
    email = str(form.get("email", "")).strip()
    secret = str(form.get("secret", ""))
    if not secret:
        return await login_form(request, status=400, message="Enter an org token, or an email and its secret.",
                                form=form)
    nxt = str(form.get("next", ""))
    resp = _redirect(nxt if _safe_next(nxt) else UI)
    try:
        await session.start(request, resp, email or None, secret)
    except Unauthorized as e:
        return await login_form(request, status=401, message=e.message[:1].upper() + e.message[1:] + ".",
                                form=form)
    return resp


async def logout(request: web.Request):
    """POST /ui/logout."""
    sess = await session.current(request)
    session.check_csrf(await request.post(), sess)
    resp = _redirect("/ui/login")
    await session.end(request, resp)
    return resp


# -- pages ----------------------------------------------------------------------------------------

async def home(request: web.Request):
    """GET /ui/: the organization's projects (straight to the only one)."""
    sess = await session.current(request)
    projects = await list_projects(request.app, sess.ident)
    if len(projects) == 1:
        return _redirect(f"/ui/p/{quote(projects[0]['slug'])}/releases")
    return render(request, "projects.html", sess, projects=projects)


async def project_home(request: web.Request):
    await _ctx(request)
    return _redirect(f"/ui/p/{quote(request.match_info['project'])}/releases")


async def releases_page(request: web.Request):
    sess, ctx = await _ctx(request)
    q = request.query
    rows = await releases.list_releases(ctx, software_type=q.get("software_type"),
                                        hardware_version=q.get("hardware_version"))
    return render(request, "releases.html", sess, project=ctx.project, nav="releases", releases=rows,
                  software_types=await releases.software_types(ctx), filters=q)


def _cohort_choices(ident, cohorts: list[dict]) -> list[dict]:
    return [{**c, "may_change": deployments.may_change(ident, c)} for c in cohorts]


async def release_page(request: web.Request):
    sess, ctx = await _ctx(request)
    rel = await releases.get_release(ctx, str(_int(request.match_info["release"], "release")))
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
    sess, ctx = await _ctx(request)
    return render(request, "cohorts.html", sess, project=ctx.project, nav="cohorts",
                  cohorts=await fleet.list_cohorts(ctx))


async def matrix_page(request: web.Request):
    """The version matrix: rows = current version, columns = what a poll answers next."""
    sess, ctx = await _ctx(request)
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


# -- deployment changes (each with a confirmation step) ------------------------------------------

def _percent(raw: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) > 100:
        raise BadRequest("the rollout percentage must be a whole number from 0 to 100")
    return int(raw)


def _spec(rel: dict, cohort: str, percent: int | None) -> deployments.ActivationSpec:
    """The same validation as POST deployments, from a release's identity."""
    return deployments.ActivationSpec.parse({
        "type": "normal" if percent is None else "staged_rollout",
        "release": [rel["delta_from"], rel["version"]] if rel["delta_from"] else rel["version"],
        "cohort": cohort, "rollout_percent": percent, "software_type": rel["software_type"]})


async def _confirm_or_do(request, sess, ctx, form, *, summary: str, cohort_slug: str, fields: dict, do):
    if form.get("confirm") != "yes":
        cohort = await fleet.get_cohort(ctx, cohort_slug)
        return render(request, "confirm.html", sess, project=ctx.project, nav="releases", summary=summary,
                      cohort=cohort, fields=fields, action=request.path,
                      back=str(form.get("back", "")) if _safe_next(str(form.get("back", ""))) else "")
    change = await do()
    return render(request, "done.html", sess, project=ctx.project, nav="releases", summary=summary,
                  change=change, cohort_slug=cohort_slug)


async def activate(request: web.Request):
    """POST /ui/p/{project}/deployments: activate a release in a cohort (confirm first)."""
    sess, ctx, form = await _post(request)
    rel = await releases.get_release(ctx, str(_int(str(form.get("release_id", "")), "release")))
    percent = _percent(str(form.get("percent", "")))
    spec = _spec(rel, str(form.get("cohort", "")), percent)
    label = f"{rel['delta_from']} → {rel['version']} (delta)" if rel["delta_from"] else rel["version"]
    summary = (f"Activate {rel['software_type']} {label} in cohort “{spec.cohort}” "
               + (f"as a staged rollout to {spec.rollout_percent} % of its devices" if spec.type == "staged_rollout"
                  else "for all its devices"))
    return await _confirm_or_do(
        request, sess, ctx, form, summary=summary, cohort_slug=spec.cohort,
        fields={"release_id": rel["id"], "cohort": spec.cohort, "percent": "" if percent is None else percent,
                "back": form.get("back", "")},
        do=lambda: deployments.activate(ctx, spec))


async def _active_deployment(ctx: Context, raw: str) -> dict:
    dep = await deployments.get_deployment(ctx, _int(raw, "deployment"))
    if not dep["active"]:
        raise Conflict(f"deployment {dep['id']} is already deactivated")
    return dep


async def change_rollout(request: web.Request):
    """POST /ui/p/{project}/deployments/{id}/rollout: change a staged rollout's percentage."""
    sess, ctx, form = await _post(request)
    dep = await _active_deployment(ctx, request.match_info["id"])
    percent = _percent(str(form.get("percent", "")))
    rel = dict(dep["release"])
    spec = _spec(rel, dep["cohort"]["slug"], percent)
    summary = (f"Change the rollout of {rel['software_type']} {rel['version']} in cohort “{spec.cohort}” "
               f"from {dep['rollout_percent']} % to {100 if percent is None else percent} %")
    return await _confirm_or_do(request, sess, ctx, form, summary=summary, cohort_slug=spec.cohort,
                                fields={"percent": "" if percent is None else percent, "back": form.get("back", "")},
                                do=lambda: deployments.activate(ctx, spec))


async def abort(request: web.Request):
    """POST /ui/p/{project}/deployments/{id}/abort: deactivate (pull) an activation."""
    sess, ctx, form = await _post(request)
    dep = await _active_deployment(ctx, request.match_info["id"])
    rel = dep["release"]
    summary = (f"Abort (deactivate) {rel['software_type']} {rel['version']} in cohort “{dep['cohort']['slug']}”: "
               "devices stop being offered it")
    return await _confirm_or_do(request, sess, ctx, form, summary=summary, cohort_slug=dep["cohort"]["slug"],
                                fields={"back": form.get("back", "")},
                                do=lambda: deployments.deactivate(ctx, dep["id"]))


async def requests_page(request: web.Request):
    sess, ctx = await _ctx(request)
    status = request.query.get("status", "pending")
    return render(request, "requests.html", sess, project=ctx.project, nav="requests", req_status=status,
                  requests=await deployments.list_requests(ctx, status))


async def decide(request: web.Request):
    """POST /ui/p/{project}/requests/{id}/approve|reject."""
    sess, ctx, form = await _post(request)
    approve = request.match_info["decision"] == "approve"
    req = await deployments.decide(ctx, _int(request.match_info["id"], "activation request"), approve)
    return render(request, "done.html", sess, project=ctx.project, nav="requests", change=None,
                  summary=f"Request {req['id']} {req['status']}", cohort_slug=req["cohort"])


# -- devices ----------------------------------------------------------------------------------------

async def devices_page(request: web.Request):
    sess, ctx = await _ctx(request)
    q = request.query
    serial = q.get("serial", "").strip()
    try:
        page_no = max(int(q.get("page", 1)), 1)
    except ValueError:
        raise BadRequest("page must be an integer") from None
    total, rows = await fleet.list_devices(ctx, cohort=q.get("cohort"), hardware_version=q.get("hardware_version"),
                                           serial_prefix=serial, limit=50, page=page_no)
    if serial and any(d["device_serial"] == serial for d in rows) and total == 1:
        return _redirect(f"/ui/p/{quote(ctx.project['slug'])}/devices/{quote(serial, safe='')}")
    return render(request, "devices.html", sess, project=ctx.project, nav="devices", devices=rows, total=total,
                  page=page_no, pages=max(1, -(-total // 50)), filters=q, cohorts=await fleet.list_cohorts(ctx))


async def device_page(request: web.Request):
    """A device: what it gets next on each protocol and why, its history and DDI actions."""
    sess, ctx = await _ctx(request)
    serial = request.match_info["serial"]
    dev = await fleet.get_device(ctx, serial)
    inspected = await insight.inspect_device(ctx, serial)
    history = await fleet.device_history(ctx, serial, limit=50)
    actions = await ddi_svc.device_actions(ctx, serial)
    ddi_info = await ddi_svc.device_ddi(ctx, serial)
    return render(request, "device.html", sess, project=ctx.project, nav="devices", device=dev,
                  inspect=inspected, history=history, actions=actions, ddi=ddi_info)


async def retry(request: web.Request):
    """POST /ui/p/{project}/devices/{serial}/actions/{id}/retry: offer a failed DDI release again."""
    sess, ctx, form = await _post(request)
    serial = request.match_info["serial"]
    change = await ddi_svc.retry_action(ctx, serial, _int(request.match_info["id"], "action"))
    if change.pending:
        return render(request, "done.html", sess, project=ctx.project, nav="devices", change=change,
                      cohort_slug=change.data["cohort"], summary=f"Retry the failed release on {serial}",
                      device=serial)
    out = change.data
    return render(request, "done.html", sess, project=ctx.project, nav="devices", change=None, cohort_slug=None,
                  summary=f"Release {out['version']} will be offered to {serial} again "
                          f"({out['cleared_failures']} failure(s) cleared)", device=serial)


async def audit_page(request: web.Request):
    sess, ctx = await _ctx(request)
    q = request.query
    before = q.get("before", "")
    rows = await insight.audit_log(ctx, actor=q.get("actor"), action=q.get("action"), limit=50,
                                   before=_int(before, "audit page") if before else None)
    older = None
    if len(rows) == 50:
        older = urlencode({**{k: v for k, v in q.items() if k in ("actor", "action") and v},
                           "before": rows[-1]["id"]})
    return render(request, "audit.html", sess, project=ctx.project, nav="audit", entries=rows, filters=q,
                  older=older)


# -- static files, 404 --------------------------------------------------------------------------------

def _static_handler(folder: Path):
    files = {p.name: (p.read_bytes(), _STATIC_TYPES[p.suffix]) for p in folder.iterdir() if p.suffix in _STATIC_TYPES}

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
    return _redirect(UI)


def add_routes(app: web.Application, static_dir: Path) -> None:
    r = app.router
    r.add_get("/ui", page(ui_root))
    r.add_get(UI, page(home))
    r.add_get("/ui/login", page(login_page))
    r.add_post("/ui/login", page(login))
    r.add_post("/ui/logout", page(logout))
    r.add_get("/ui/static/{name}", page(_static_handler(static_dir)))
    r.add_get(PP, page(project_home))
    r.add_get(PP + "/", page(project_home))
    r.add_get(PP + "/releases", page(releases_page))
    r.add_get(PP + "/releases/{release}", page(release_page))
    r.add_get(PP + "/cohorts", page(cohorts_page))
    r.add_get(PP + "/cohorts/{cohort}", page(matrix_page))
    r.add_post(PP + "/deployments", page(activate))
    r.add_post(PP + "/deployments/{id}/rollout", page(change_rollout))
    r.add_post(PP + "/deployments/{id}/abort", page(abort))
    r.add_get(PP + "/requests", page(requests_page))
    r.add_post(PP + "/requests/{id}/{decision:approve|reject}", page(decide))
    r.add_get(PP + "/devices", page(devices_page))
    r.add_get(PP + "/devices/{serial}", page(device_page))
    r.add_post(PP + "/devices/{serial}/actions/{id}/retry", page(retry))
    r.add_get(PP + "/audit", page(audit_page))
    r.add_route("*", "/ui/{tail:.*}", page(ui_not_found))
