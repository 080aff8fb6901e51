"""What a change would do, computed by doing it and rolling it back ("dry run").

A snapshot is the project as polls would see it (the same views the mirror builds, read inside
the write's transaction) and every device of the project grouped by what decides its answer.
The change runs in a transaction; the snapshots before and after it are compared with the same
resolution code that answers polls (`ProjectView.answer`, `ddi_actions.plan`), and the
transaction is rolled back. The answer carries a token: the salt of a staged draw the change
makes (so applying it draws the same devices) and a digest of the comparison. Applying the change
with that token redoes it and commits only when the comparison is still the same (else 409).
"""
from __future__ import annotations

import base64
import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass

import orjson

from gateway.domain.ddi_actions import Caller, plan
from gateway.domain.errors import BadRequest
from gateway.memory.ddi_cache import state_from_row
from gateway.memory.views import ProjectView, build_project_view, device_view
from gateway.store import ddi as ddi_store
from gateway.store import insight as insight_store
from gateway.store import mirror as mirror_store

MAX_LISTED_CANCELS = 1000  # DDI devices whose open action a preview checks (and lists)


@dataclass
class Snapshot:
    """The project as polls would answer it, and its devices in groups."""
    view: ProjectView
    groups: list
    cancels: dict[str, tuple[int, str]]  # serial -> (action id, version) of actions a poll would cancel


async def snapshot(conn, project_id: int) -> Snapshot:
    """Read the project's state in the caller's transaction."""
    state = await mirror_store.project_state(conn, project_id)
    devices = {r["serial"]: device_view(r) for r in await mirror_store.load_device_exceptions(conn, project_id)}
    view = build_project_view(state, devices)
    types = sorted(view.software_types | {r.software_type for r in view.releases.values()})
    groups = await insight_store.project_groups(conn, project_id, types)
    serials = await insight_store.open_action_serials(conn, project_id, MAX_LISTED_CANCELS)
    rows = await ddi_store.load_device_states(conn, project_id, serials) if serials else {}
    cancels = {}
    for serial, row in rows.items():
        offer = plan(Caller(view, serial, None, state_from_row(row)))
        if offer.what == "cancel":
            cancels[serial] = (offer.action.id, offer.action.version)
    return Snapshot(view, groups, cancels)


def _targets(snap: Snapshot) -> dict[tuple, Counter]:
    """(cohort id, software type, hardware, current version) -> Counter(release id or None)."""
    out: dict[tuple, Counter] = defaultdict(Counter)
    for g in snap.groups:
        decision = snap.view.answer(g["cohort_id"], g["software_type"], g["hardware_version"], g["version"],
                                    g["staged"], g["release_override_id"])
        out[(g["cohort_id"], g["software_type"], g["hardware_version"], g["version"])][decision.release_id] += g["n"]
    return out


def diff(before: Snapshot, after: Snapshot) -> dict:
    """The version-matrix difference: per (cohort, software type, hardware, current version)
    whose answers change, the devices per next release before and after, the devices that would
    move to each release and the bytes they would download; the DDI actions polls would cancel."""
    old, new = _targets(before), _targets(after)
    view = after.view
    cohorts = {**before.view.cohorts, **view.cohorts}
    rows, moving, total_bytes = [], 0, 0
    for key in sorted(set(old) | set(new), key=lambda k: tuple("" if x is None else str(x) for x in k)):
        a, b = old.get(key, Counter()), new.get(key, Counter())
        if a == b:
            continue
        cohort_id, sw, hw, current = key
        to = {}
        for rid, n in b.items():
            grew = n - a.get(rid, 0)
            if grew > 0 and rid is not None:
                rel = view.releases.get(rid)
                pl = rel.payloads.get(hw) if rel and hw else None
                size = pl.size if pl else 0
                to[rel.version if rel else str(rid)] = {"devices": grew, "bytes": grew * size}
                moving += grew
                total_bytes += grew * size
        rows.append({"cohort": cohorts[cohort_id]["slug"] if cohort_id in cohorts else str(cohort_id),
                     "software_type": sw, "hardware_version": hw, "current_version": current,
                     "before": _named(before.view, a), "after": _named(view, b), "to": to})
    cancels = sorted((s, aid, v) for s, (aid, v) in after.cancels.items() if s not in before.cancels)
    return {"changes": rows, "devices_moving": moving, "bytes": total_bytes,
            "ddi_cancels": [{"device_serial": s, "action_id": aid, "version": v} for s, aid, v in cancels]}


def _named(view: ProjectView, targets: Counter) -> dict[str, int]:
    """Release ids as versions ("(no update)" for none)."""
    out: Counter = Counter()
    for rid, n in targets.items():
        rel = view.releases.get(rid) if rid is not None else None
        out["(no update)" if rid is None else (rel.version if rel else str(rid))] += n
    return dict(sorted(out.items()))


def token(salt: int | None, outcome: dict) -> str:
    """The preview's token: the draw's salt and a digest of what the change would do."""
    digest = hashlib.sha256(orjson.dumps(outcome, option=orjson.OPT_SORT_KEYS)).digest()[:16]
    raw = (salt or 0).to_bytes(8, "big") + digest
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_token(text) -> tuple[int | None, bytes]:
    """(salt, digest) of a token; 400 naming the field when it is not one."""
    if not isinstance(text, str) or not 20 <= len(text) <= 40:
        raise BadRequest("preview_token must be the token a dry run answered")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise BadRequest("preview_token must be the token a dry run answered") from None
    if len(raw) != 24:
        raise BadRequest("preview_token must be the token a dry run answered")
    salt = int.from_bytes(raw[:8], "big")
    return salt or None, raw[8:]


def matches(text: str, outcome: dict) -> bool:
    """Whether `outcome` is what the token's preview computed."""
    salt, digest = parse_token(text)
    return token(salt, outcome) == text
