"""Read-only insight for release managers: the per-cohort version matrix, "inspect device"
(what it gets on each protocol and why) and the audit log.

Both the matrix and inspect run the same pure resolution as the poll path, over the same
mirrored decision tables: there is no second implementation to drift."""
from __future__ import annotations

from collections import Counter, defaultdict

from gateway.domain import resolution
from gateway.domain.errors import BadRequest, NotFound
from gateway.domain.fields import iso
from gateway.domain.versions import version_key
from gateway.memory.mirror import ProjectView
from gateway.services import Context, ddi
from gateway.store import access as access_store
from gateway.store import deployments as deployments_store
from gateway.store import fleet as fleet_store
from gateway.store import insight as insight_store

# extra per-protocol inspectors (e.g. DDI) register here:
# async (app, view, serial, software_type, entry) -> dict merged into the entry


def _version_of(view: ProjectView, release_id: int | None) -> str | None:
    rel = view.releases.get(release_id) if release_id is not None else None
    return rel.version if rel else None


def matrix(view: ProjectView, cohort_id: int, software_type: str, groups) -> dict:
    """Rows = current versions, columns = next versions, cells = device counts."""
    cells: dict[str, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    staged: Counter = Counter()
    reasons: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for g in groups:
        current, is_staged, n = g["version"], g["staged"], g["n"]
        decision = view.answer(cohort_id, software_type, g["hardware_version"], current, is_staged,
                               g["release_override_id"])
        row = current or "(none reported)"
        col = _version_of(view, decision.release_id) or "(no update)"
        cells[row][col] += n
        totals[row] += n
        if is_staged:
            staged[row] += n
        reasons[(row, col)][decision.reason] += n
    rows = sorted(cells, key=lambda r: (r.startswith("("), version_key(r)))
    cols = sorted({c for r in cells.values() for c in r}, key=lambda c: (c.startswith("("), version_key(c)))
    return {
        "rows": rows, "columns": cols,
        "cells": [[cells[r].get(c, 0) for c in cols] for r in rows],
        "reasons": {f"{r} -> {c}": dict(v) for (r, c), v in reasons.items()},
        "row_totals": [totals[r] for r in rows],
        "staged_share": [round(staged[r] / totals[r], 4) if totals[r] else 0 for r in rows],
        "devices": sum(totals.values()), "staged_devices": sum(staged.values()),
        "staged_fraction": round(sum(staged.values()) / sum(totals.values()), 4) if totals else 0.0,
    }


async def version_matrix(ctx: Context, slug: str, software_type: str | None = None) -> dict:
    """One cohort's version matrix for a software type (required when the cohort has several)."""
    view = ctx.view()
    pool = ctx.pool
    cohort = await fleet_store.cohort_by_slug(pool, ctx.pid, slug)
    if cohort is None:
        raise NotFound(f"cohort {slug!r} not found")
    acts = [a for a in await deployments_store.list_activations(pool, ctx.pid, cohort=slug) if a["status"] == "active"]
    sw = software_type
    if not sw:
        types = sorted({a["software_type"] for a in acts}) or sorted(view.software_types)
        if len(types) != 1:
            raise BadRequest(f"software_type is required (one of: {', '.join(types) or 'none yet'})")
        sw = types[0]
    groups = await insight_store.version_groups(pool, cohort["id"], sw)
    out = matrix(view, cohort["id"], sw, groups)
    releases = []
    for a in acts:
        if a["software_type"] != sw:
            continue
        rel = view.releases.get(a["release_id"])
        kind = "delta" if a["from_version"] else ("must_pass_through" if rel and rel.must_pass_through else "full")
        releases.append({"version": a["version"], "delta_from": a["from_version"], "kind": kind,
                         "staged": a["type"] == "staged_rollout", "rollout_percent": a["rollout_percent"],
                         "deployment_id": a["id"]})
    fulls = [r for r in releases if r["kind"] != "delta"]
    target = max((r["version"] for r in fulls if not r["staged"]), key=version_key, default=None)
    staged_target = max((r["version"] for r in fulls), key=version_key, default=None)
    return {"cohort": slug, "software_type": sw, **out, "active_releases": releases,
            "target_version": target, "staged_target_version": staged_target}


async def inspect_device(ctx: Context, serial: str, *, software_type: str | None = None,
                         current_version: str | None = None, hardware_version: str | None = None) -> dict:
    """What the device would get now on each protocol, the reason and every rule considered;
    computed like a poll, without writing anything."""
    view = ctx.view()
    pool = ctx.pool
    dev = await fleet_store.device_row(pool, ctx.pid, serial)
    if dev is None and not hardware_version:
        raise NotFound(f"device {serial} not found (pass hardware_version to inspect an unregistered serial)")
    # as a poll answers: for the hardware the device last reported (registered: what it reported first)
    hw = hardware_version or (dev["reported_hardware_version"] or dev["hardware_version"] if dev else None)
    versions = dict(dev["versions"]) if dev else {}
    types = [software_type] if software_type else sorted(set(versions) | {
        sw for (c, sw) in view.active if c == (dev["cohort_id"] if dev else view.default_cohort_id)})
    mirrored = view.devices.get(serial)
    cohort_id = mirrored.cohort_id if mirrored else view.default_cohort_id
    keys = [k for k in await access_store.list_project_keys(pool, ctx.pid) if k["revoked_at"] is None and k["cohort_override"]]
    out = []
    for sw in types:
        current = current_version or versions.get(sw)
        staged = view.staged(serial, mirrored, cohort_id, sw)
        decision, _ = view.decide(serial, hw or "", sw, current)
        table = view.tables.get((cohort_id, sw, hw, staged))
        override = view.releases.get(mirrored.override_release_id) if mirrored else None
        entry = {
            "software_type": sw, "current_version": current,
            "memfault": {"release": _version_of(view, decision.release_id), "release_id": decision.release_id,
                         "reason": decision.reason},
            "rules": {
                "override": None if override is None else {"release": override.version, "release_id": override.id},
                "cohort": view.cohorts[cohort_id]["slug"], "staged": staged,
                "active_release_in_cohort": (cohort_id, sw) in view.active,
                "table": resolution.explain(table, current),
            },
            "with_project_key_cohort_override": [],
        }
        for k in keys:
            cid = next((c["id"] for c in view.cohorts.values() if c["slug"] == k["cohort_override"]), None)
            kd, _ = view.decide(serial, hw or "", sw, current, cid)
            entry["with_project_key_cohort_override"].append(
                {"key_id": k["id"], "key_name": k["name"], "cohort": k["cohort_override"],
                 "release": _version_of(view, kd.release_id), "reason": kd.reason})
        entry.update(await ddi.inspect_ddi(ctx.res, view, serial, sw))
        out.append(entry)
    return {"device_serial": serial, "registered": dev is not None, "hardware_version": hw,
            "cohort": view.cohorts[cohort_id]["slug"], "staged": any(s["rules"]["staged"] for s in out),
            "software": out}


async def audit_log(ctx: Context, *, actor: str | None = None, action: str | None = None, limit: int = 100,
                    before: int | None = None) -> list[dict]:
    """Newest first, append-only; `action` matches a prefix, `before` pages by id."""
    rows = await insight_store.list_audit(ctx.pool, ctx.pid, actor=actor or None, action=action or None,
                                  limit=min(limit, 1000), before_id=before)
    return [{"id": r["id"], "actor": r["actor"], "action": r["action"], "object": r["object"],
             "before": r["before"], "after": r["after"], "date": iso(r["at"])} for r in rows]
