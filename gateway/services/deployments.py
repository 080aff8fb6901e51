"""Deployments (release activations): activate, change a staged rollout, pull; protected cohorts;
approval requests; activation history."""
from __future__ import annotations

from dataclasses import dataclass

from gateway.domain import notify, staging
from gateway.domain.access import Identity
from gateway.domain.errors import BadRequest, Conflict, NotFound
from gateway.domain.fields import iso, need_str
from gateway.services import Change, Context, protect
from gateway.services.changes import Tx
from gateway.services.protect import applier
from gateway.services.releases import one_release
from gateway.store import deployments as deployments_store
from gateway.store import fleet as fleet_store
from gateway.store import releases as releases_store
from gateway.store import staging as staging_store


def deployment_json(a, counts: dict[int, tuple[int, int]] | None = None) -> dict:
    """A deployment as the API shows it; `counts` (by activation id: cohort devices, staged
    devices) puts the actual staged count and fraction next to the configured percentage."""
    n, staged = (counts or {}).get(a["id"], (None, None))
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
        "stage_newcomers": a["stage_threshold"] is not None if a["type"] == "staged_rollout" else None,
        "staged_devices": staged, "cohort_devices": n,
        "staged_fraction": round(staged / n, 4) if n else (0.0 if n == 0 else None),
    }


async def staged_counts(conn, project_id: int) -> dict[int, tuple[int, int]]:
    """(cohort devices, staged devices) of every active staged activation, by id."""
    return {r["id"]: (r["devices"], r["staged"]) for r in await staging_store.active_counts(conn, project_id)}


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
    stage_newcomers: bool | None = None  # stage devices joining the cohort later (None: keep as is)

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
        newcomers = body.get("stage_newcomers")
        if newcomers is not None and (not isinstance(newcomers, bool) or typ != "staged_rollout"):
            raise BadRequest("stage_newcomers must be a boolean, and only for a staged_rollout")
        return cls(version, from_version, cohort_slug, typ, percent, software_type, newcomers)


async def _activate(tx: Tx, cohort, release, typ: str, percent: int | None,
                    stage_newcomers: bool | None, salt: int | None = None) -> tuple[int, bool]:
    """Create or change the activation (and its staged draw); returns (id, created)."""
    conn, pid, actor = tx.conn, tx.ctx.pid, tx.actor
    release_id = release["id"]
    existing = await deployments_store.active_activation(conn, release_id, cohort["id"])
    if typ == "staged_rollout":
        await _one_staged(conn, cohort, release)
    after = {"type": typ, "rollout_percent": percent}
    if existing is None:
        aid = await deployments_store.create_activation(conn, pid, release_id, cohort["id"], type_=typ,
                                                        rollout_percent=percent, actor=actor,
                                                        salt=salt or staging.new_salt())
        await deployments_store.activation_event(conn, pid, aid, "activate", actor, None, after)
    else:
        aid = existing["id"]
        before = {"type": existing["type"], "rollout_percent": existing["rollout_percent"]}
        await deployments_store.update_activation(conn, aid, type_=typ, rollout_percent=percent)
        await deployments_store.activation_event(conn, pid, aid, "update", actor, before, after)
    if typ == "staged_rollout":
        newcomers = (existing is not None and existing["stage_threshold"] is not None
                     if stage_newcomers is None else stage_newcomers)
        await _restage(conn, aid, percent, newcomers, fresh=existing is None or existing["type"] != typ)
        await tx.changed(notify.cohort_devices(pid, cohort["id"]))
    await tx.rebuild()
    return aid, existing is None


async def _one_staged(conn, cohort, release) -> None:
    """409 when the cohort has a staged rollout of another release of the same software type
    (the same release: a change of its percentage)."""
    other = await staging_store.staged_activation(conn, cohort["id"], release["software_type"])
    if other is not None and other["release_id"] != release["id"]:
        raise Conflict(f"cohort {cohort['slug']!r} already has a staged rollout of software type "
                       f"{release['software_type']!r}: release {other['version']} (deployment {other['id']}); "
                       "change its percentage, make it normal or deactivate it first",
                       type="staged_rollout_exists")


async def _restage(conn, aid: int, percent: int, newcomers: bool, *, fresh: bool) -> None:
    """Bring the activation's staged set to `percent`: widening keeps every staged device and
    adds the next ones of its draw, narrowing takes back only devices that have not taken the
    release (domain/staging.py). A fresh draw (a new staged activation, or a normal one becoming
    staged) starts from the devices that took the release already."""
    if fresh:
        await staging_store.clear(conn, aid)
        await staging_store.stage_takers(conn, aid)
    else:
        await staging_store.materialize(conn, aid)
    devices, staged, takers = await staging_store.counts(conn, aid)
    add, take_back = staging.plan_change(staged, devices, percent, takers)
    await staging_store.widen(conn, aid, add)
    await staging_store.narrow(conn, aid, take_back)
    await staging_store.set_rule(conn, aid, staging.newcomer_threshold(percent) if newcomers else None)


async def _deactivate(tx: Tx, activation) -> None:
    conn, pid = tx.conn, tx.ctx.pid
    await deployments_store.pull_activation(conn, activation["id"], tx.actor)
    await deployments_store.activation_event(
        conn, pid, activation["id"], "pull", tx.actor,
        {"type": activation["type"], "rollout_percent": activation["rollout_percent"]}, None)
    await tx.rebuild()


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
    counts = await staged_counts(ctx.pool, ctx.pid)
    return [deployment_json(r, counts) for r in rows]


async def activate(ctx: Context, spec: ActivationSpec, **preview) -> Change:
    """Activate a release in a cohort (or change its rollout percentage). In a cohort that
    requires approval this only files a request (`pending`). `preview`: dry_run, preview_token
    (protect.run)."""
    ctx.ident.require("editor")
    async with ctx.pool.acquire() as conn:
        cohort = await fleet_store.cohort_by_slug(conn, ctx.pid, spec.cohort)
        if cohort is None:
            raise NotFound(f"cohort {spec.cohort!r} not found")
        rel = await one_release(conn, ctx.pid, spec.version, spec.from_version, spec.software_type)
    return await protect.run(ctx, "activate", {"release_id": rel["id"], "cohort_id": cohort["id"],
                                               "type": spec.type, "rollout_percent": spec.rollout_percent,
                                               "stage_newcomers": spec.stage_newcomers}, **preview)


@applier("activate")
async def _apply_activate(tx: Tx, p: dict, approved: bool) -> Change:
    ctx, conn = tx.ctx, tx.conn
    pid = ctx.pid
    cohort = await fleet_store.cohort_by_id(conn, pid, p["cohort_id"])
    existing = await deployments_store.active_activation(conn, p["release_id"], p["cohort_id"])
    rel = (await releases_store.releases_with_payloads(conn, pid, release_id=p["release_id"]))
    if not rel or cohort is None:
        raise Conflict("the release or cohort of this activation no longer exists")
    if p["type"] == "staged_rollout":
        await _one_staged(conn, cohort, rel[0])
    pending = await protect.guard(
        tx, [cohort], "activate", approved=approved,
        params={k: p[k] for k in ("stage_newcomers", "salt") if p.get(k) is not None} or None,
        release_id=p["release_id"], type_=p["type"],
        rollout_percent=p["rollout_percent"], activation_id=existing["id"] if existing else None,
        summary={"release": rel[0]["version"], "from_version": rel[0]["from_version"], "cohort": cohort["slug"],
                 "type": p["type"], "rollout_percent": p["rollout_percent"]})
    if pending:
        return pending
    aid, created = await _activate(tx, cohort, rel[0], p["type"], p["rollout_percent"], p.get("stage_newcomers"),
                                   p.get("salt"))
    row = (await deployments_store.list_activations(conn, pid, activation_id=aid))[0]
    if not approved:
        await tx.audit("deployment.create" if created else "deployment.update", f"deployment:{aid}", None,
                       deployment_json(row))
    return Change(deployment_json(row, await staged_counts(conn, pid)), created=created)


async def get_deployment(ctx: Context, aid: int) -> dict:
    rows = await deployments_store.list_activations(ctx.pool, ctx.pid, activation_id=aid)
    if not rows:
        raise NotFound(f"deployment {aid} not found")
    return deployment_json(rows[0], await staged_counts(ctx.pool, ctx.pid))


async def deactivate(ctx: Context, aid: int, **preview) -> Change:
    """Pull (deactivate, "abort") an activation; only a request in a cohort that requires approval."""
    return await protect.run(ctx, "deactivate", {"activation_id": aid}, **preview)


@applier("deactivate")
async def _apply_deactivate(tx: Tx, p: dict, approved: bool) -> Change:
    ctx, conn = tx.ctx, tx.conn
    pid, aid = ctx.pid, p["activation_id"]
    rows = await deployments_store.list_activations(conn, pid, activation_id=aid)
    if not rows:
        raise NotFound(f"deployment {aid} not found")
    act = rows[0]
    if act["status"] != "active":
        raise Conflict(f"deployment {aid} is already deactivated" if not approved
                       else "the deployment to deactivate is no longer active")
    cohort = await fleet_store.cohort_by_id(conn, pid, act["cohort_id"])
    pending = await protect.guard(tx, [cohort], "deactivate", approved=approved,
                                  release_id=act["release_id"], type_=act["type"],
                                  rollout_percent=act["rollout_percent"], activation_id=aid,
                                  summary={"deactivate": aid})
    if pending:
        return pending
    await _deactivate(tx, act)
    if not approved:
        await tx.audit("deployment.deactivate", f"deployment:{aid}", deployment_json(act), None)
    row = (await deployments_store.list_activations(conn, pid, activation_id=aid))[0]
    return Change(deployment_json(row))


async def activation_history(ctx: Context, *, limit: int = 500, offset: int = 0) -> list[dict]:
    rows = await deployments_store.list_activation_events(ctx.pool, ctx.pid, limit=limit, offset=offset)
    return [{"deployment_id": r["activation_id"], "action": r["action"], "actor": r["actor"],
             "release": r["version"], "delta_from": r["from_version"], "software_type": r["software_type"],
             "cohort": r["cohort_slug"], "before": r["before"], "after": r["after"], "date": iso(r["at"])}
            for r in rows]
