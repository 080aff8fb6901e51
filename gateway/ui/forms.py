"""The dashboard's write forms: activate a release, change a staged rollout, abort (deactivate),
approve or reject a request, retry a failed DDI action. Each goes through the same service
functions as the REST API; deployment changes ask for confirmation first."""
from __future__ import annotations

from aiohttp import web

from gateway.domain.errors import Conflict
from gateway.services import Context, approvals, deployments, fleet, releases
from gateway.services import ddi as ddi_svc
from gateway.ui.context import form_context, form_int, form_text, number
from gateway.ui.render import render, safe_next


def _spec(rel: dict, cohort: str, percent: int | None) -> deployments.ActivationSpec:
    """The same validation as POST deployments, from a release's identity."""
    return deployments.ActivationSpec.parse({
        "type": "normal" if percent is None else "staged_rollout",
        "release": [rel["delta_from"], rel["version"]] if rel["delta_from"] else rel["version"],
        "cohort": cohort, "rollout_percent": percent, "software_type": rel["software_type"]})


async def _confirm_or_do(request, sess, ctx, form, *, summary: str, cohort_slug: str, fields: dict, do):
    if form_text(form, "confirm") != "yes":
        cohort = await fleet.get_cohort(ctx, cohort_slug)
        back = form_text(form, "back", max_len=2048)
        return render(request, "confirm.html", sess, project=ctx.project, nav="releases", summary=summary,
                      cohort=cohort, fields=fields, action=request.path, back=back if safe_next(back) else "")
    change = await do()
    return render(request, "done.html", sess, project=ctx.project, nav="releases", summary=summary,
                  change=change, cohort_slug=cohort_slug)


async def activate(request: web.Request):
    """POST /ui/p/{project}/deployments: activate a release in a cohort (confirm first)."""
    sess, ctx, form = await form_context(request)
    rel = await releases.get_release(ctx, str(number(form_text(form, "release_id", max_len=32), "release")))
    percent = form_int(form, "percent", lo=0, hi=100)
    spec = _spec(rel, form_text(form, "cohort", max_len=128), percent)
    label = f"{rel['delta_from']} → {rel['version']} (delta)" if rel["delta_from"] else rel["version"]
    summary = (f"Activate {rel['software_type']} {label} in cohort “{spec.cohort}” "
               + (f"as a staged rollout to {spec.rollout_percent} % of its devices" if spec.type == "staged_rollout"
                  else "for all its devices"))
    return await _confirm_or_do(
        request, sess, ctx, form, summary=summary, cohort_slug=spec.cohort,
        fields={"release_id": rel["id"], "cohort": spec.cohort, "percent": "" if percent is None else percent,
                "back": form_text(form, "back", max_len=2048)},
        do=lambda: deployments.activate(ctx, spec))


async def _active_deployment(ctx: Context, raw: str) -> dict:
    dep = await deployments.get_deployment(ctx, number(raw, "deployment"))
    if not dep["active"]:
        raise Conflict(f"deployment {dep['id']} is already deactivated")
    return dep


async def change_rollout(request: web.Request):
    """POST /ui/p/{project}/deployments/{id}/rollout: change a staged rollout's percentage."""
    sess, ctx, form = await form_context(request)
    dep = await _active_deployment(ctx, request.match_info["id"])
    percent = form_int(form, "percent", lo=0, hi=100)
    rel = dict(dep["release"])
    spec = _spec(rel, dep["cohort"]["slug"], percent)
    summary = (f"Change the rollout of {rel['software_type']} {rel['version']} in cohort “{spec.cohort}” "
               f"from {dep['rollout_percent']} % to {100 if percent is None else percent} %")
    return await _confirm_or_do(request, sess, ctx, form, summary=summary, cohort_slug=spec.cohort,
                                fields={"percent": "" if percent is None else percent,
                                        "back": form_text(form, "back", max_len=2048)},
                                do=lambda: deployments.activate(ctx, spec))


async def abort(request: web.Request):
    """POST /ui/p/{project}/deployments/{id}/abort: deactivate (pull) an activation."""
    sess, ctx, form = await form_context(request)
    dep = await _active_deployment(ctx, request.match_info["id"])
    rel = dep["release"]
    summary = (f"Abort (deactivate) {rel['software_type']} {rel['version']} in cohort “{dep['cohort']['slug']}”: "
               "devices stop being offered it")
    return await _confirm_or_do(request, sess, ctx, form, summary=summary, cohort_slug=dep["cohort"]["slug"],
                                fields={"back": form_text(form, "back", max_len=2048)},
                                do=lambda: deployments.deactivate(ctx, dep["id"]))


async def decide(request: web.Request):
    """POST /ui/p/{project}/requests/{id}/approve|reject."""
    sess, ctx, form = await form_context(request)
    approve = request.match_info["decision"] == "approve"
    req = await approvals.decide(ctx, number(request.match_info["id"], "activation request"), approve)
    return render(request, "done.html", sess, project=ctx.project, nav="requests", change=None,
                  summary=f"Request {req['id']} {req['status']}", cohort_slug=req["cohort"])


async def retry(request: web.Request):
    """POST /ui/p/{project}/devices/{serial}/actions/{id}/retry: offer a failed DDI release again."""
    sess, ctx, form = await form_context(request)
    serial = request.match_info["serial"]
    change = await ddi_svc.retry_action(ctx, serial, number(request.match_info["id"], "action"))
    if change.pending:
        return render(request, "done.html", sess, project=ctx.project, nav="devices", change=change,
                      cohort_slug=change.data["cohort"], summary=f"Retry the failed release on {serial}",
                      device=serial)
    out = change.data
    return render(request, "done.html", sess, project=ctx.project, nav="devices", change=None, cohort_slug=None,
                  summary=f"Release {out['version']} will be offered to {serial} again "
                          f"({out['cleared_failures']} failure(s) cleared)", device=serial)
