"""What the mirror holds of a project, as the poll path reads it: releases and payloads, the
decision tables, the deviating devices and the staged-rollout rules, built whole from the rows
store/mirror.py loads (a view is swapped, never edited in place by a reload)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote

import asyncpg

from gateway.crypto import ed25519, manifests
from gateway.domain import resolution, staging

_MEMO_LIMIT = 10_000  # decisions remembered per project view
_MEMO_VERSION_LEN = 64  # longer reported versions are resolved every time, not remembered
SERIAL_RE_TEXT = re.compile(r"[-a-zA-Z0-9_]{1,128}\Z")  # \Z: "$" would also take a trailing newline


@dataclass(slots=True)
class PayloadView:
    id: int
    release_id: int
    hardware_version: str
    filename: str
    size: int
    sha256: str
    md5: str
    sha1: str
    extra_info: dict | None
    created_at: str
    url_path: str
    # (expiry, bytes) caches of rendered answers, keyed by what varies (reason for /latest)
    cache: dict = field(default_factory=dict)


@dataclass(slots=True)
class ReleaseView:
    id: int
    software_type: str
    version: str
    from_version: str | None
    must_pass_through: bool
    revision: str
    notes: str
    extra_info: dict | None
    created_at: str
    updated_at: str
    payloads: dict[str, PayloadView]
    domain: resolution.Release


@dataclass(slots=True)
class DeviceView:
    serial: str
    hardware_version: str | None
    cohort_id: int
    staged: frozenset[str]      # software types whose staged activation stages it (explicitly)
    override_release_id: int | None
    unstaged: frozenset[str] = frozenset()  # ... and those it is explicitly left out of


@dataclass(frozen=True, slots=True)
class StageRule:
    """A staged activation that stages devices joining its cohort later by hash (domain/staging)."""
    salt: int
    threshold: int


@dataclass(slots=True)
class ProjectView:
    id: int
    slug: str
    org_slug: str
    generation: int
    default_cohort_id: int
    cohorts: dict[int, asyncpg.Record]
    hardware_versions: frozenset[str]
    software_types: frozenset[str]
    releases: dict[int, ReleaseView]
    payloads: dict[int, PayloadView]
    tables: dict[tuple[int, str, str, bool], resolution.DecisionTable]
    active: frozenset[tuple[int, str]]  # (cohort, software type) pairs with any active release
    devices: dict[str, DeviceView] = field(default_factory=dict)
    ddi_software_type: str | None = None      # for DDI devices that report none
    ddi_hardware_version: str | None = None
    poll_limit: int | None = None              # polls per device per minute, per process
    signing_seed: bytes | None = None          # Ed25519 key signing release manifests, if set
    signing_key_id: str | None = None
    ddi_gateway_token: bool = True             # the project key may act as a DDI GatewayToken
    stage_rules: dict[tuple[int, str], StageRule] = field(default_factory=dict)  # by (cohort, software type)

    # decisions by everything they depend on (software type, hardware, version, cohort, staged,
    # override): a fleet shares a handful of these; a view is rebuilt when releases change
    _memo: dict = field(default_factory=dict)

    def strings(self) -> list[str]:
        """The names a device of this project usually reports: hardware versions, software types,
        release versions (what ddi_shared needs to read a state another process stored)."""
        out = [*self.hardware_versions, *self.software_types, *(r.version for r in self.releases.values())]
        return out + [s for s in (self.ddi_software_type, self.ddi_hardware_version) if s]

    def decide(self, serial: str, hardware_version: str, software_type: str, current_version: str | None,
               cohort_override: int | None = None) -> tuple[resolution.Decision, DeviceView | None]:
        """What this device gets next: pure lookups, no I/O. `hardware_version` is the one the
        device reports (the payload must fit the hardware it runs on), whatever it was registered
        with: every device is answered alike, whether or not the mirror holds it."""
        dev = self.devices.get(serial)
        if dev is None:
            cohort, override_id = self.default_cohort_id, None
        else:
            cohort, override_id = dev.cohort_id, dev.override_release_id
        if cohort_override is not None:
            cohort = cohort_override
        staged = self.staged(serial, dev, cohort, software_type)
        key = (software_type, hardware_version, current_version, cohort, staged, override_id)
        decision = self._memo.get(key)
        if decision is None:
            decision = self.answer(cohort, software_type, hardware_version, current_version, staged, override_id)
            if current_version is None or len(current_version) <= _MEMO_VERSION_LEN:
                if len(self._memo) >= _MEMO_LIMIT:
                    self._memo.clear()
                self._memo[key] = decision
        return decision, dev

    def answer(self, cohort: int, software_type: str, hardware_version: str | None, current_version: str | None,
               staged: bool, override_id: int | None) -> resolution.Decision:
        """The decision for a device of this description (what `decide` memoizes; the version
        matrix and previews ask it for whole groups of devices at once)."""
        override = self.releases[override_id].domain if override_id in self.releases else None
        if override is not None and override.software_type != software_type:
            override = None
        return self._resolve(cohort, software_type, hardware_version or "", current_version, staged, override)

    def staged(self, serial: str, dev: DeviceView | None, cohort: int, software_type: str) -> bool:
        """Whether the device is staged for the staged activation of (cohort, software type): its
        own row says so, else the activation's newcomer rule, if it has one."""
        if dev is not None and dev.cohort_id == cohort:
            if software_type in dev.staged:
                return True
            if software_type in dev.unstaged:
                return False
        rule = self.stage_rules.get((cohort, software_type)) if self.stage_rules else None
        return rule is not None and staging.newcomer_staged(rule.salt, serial, rule.threshold)

    def _resolve(self, cohort: int, software_type: str, hardware_version: str, current_version: str | None,
                 staged: bool, override) -> resolution.Decision:
        table = self.tables.get((cohort, software_type, hardware_version, staged))
        return resolution.resolve(
            current_version, hardware_version, table,
            has_active_release=(cohort, software_type) in self.active, override=override,
            staged_table=None if staged else self.tables.get((cohort, software_type, hardware_version, True)))


def _iso(ts) -> str:
    return ts.isoformat()


def build_project_view(state: dict, devices: dict[str, DeviceView]) -> ProjectView:
    p = state["project"]
    payloads: dict[int, PayloadView] = {}
    by_release: dict[int, dict[str, PayloadView]] = {}
    for row in state["payloads"]:
        if row["firmware_type"] != "firmware" and row["hardware_version"] in by_release.get(row["release_id"], {}):
            continue  # first payload of a hardware version is the one devices download
        pv = PayloadView(
            id=row["id"], release_id=row["release_id"], hardware_version=row["hardware_version"],
            filename=row["filename"], size=row["size"], sha256=row["sha256"], md5=row["md5"], sha1=row["sha1"],
            extra_info=row["extra_info"], created_at=_iso(row["created_at"]),
            url_path=f"/dl/{row['id']}/{quote(row['filename'], safe='')}")
        payloads[pv.id] = pv
        by_release.setdefault(pv.release_id, {})[pv.hardware_version] = pv
    releases: dict[int, ReleaseView] = {}
    for r in state["releases"]:
        pls = by_release.get(r["id"], {})
        releases[r["id"]] = ReleaseView(
            id=r["id"], software_type=r["software_type"], version=r["version"], from_version=r["from_version"],
            must_pass_through=r["must_pass_through"], revision=r["revision"], notes=r["notes"],
            extra_info=r["extra_info"], created_at=_iso(r["created_at"]), updated_at=_iso(r["updated_at"]),
            payloads=pls,
            domain=resolution.Release(id=r["id"], software_type=r["software_type"], version=r["version"],
                                      hardware_versions=frozenset(pls), from_version=r["from_version"],
                                      must_pass_through=r["must_pass_through"]))
    tables = {(t["cohort_id"], t["software_type"], t["hardware_version"], t["staged"]):
              resolution.DecisionTable.from_json(t["decision"]) for t in state["tables"]}
    cohorts = {c["id"]: c for c in state["cohorts"]}
    default = next(c["id"] for c in state["cohorts"] if c["is_default"])
    return ProjectView(
        id=p["id"], slug=p["slug"], org_slug=p["org_slug"], generation=p["resolution_generation"],
        default_cohort_id=default, cohorts=cohorts,
        hardware_versions=frozenset(state["hardware_versions"]), software_types=frozenset(state["software_types"]),
        releases=releases, payloads=payloads, tables=tables,
        active=frozenset((k[0], k[1]) for k in tables), devices=devices,
        ddi_software_type=p["ddi_software_type"], ddi_hardware_version=p["ddi_hardware_version"],
        poll_limit=p["poll_limit_per_minute"], signing_seed=p["signing_seed"],
        signing_key_id=manifests.key_id(ed25519.public_key(p["signing_seed"])) if p["signing_seed"] else None,
        ddi_gateway_token=p["ddi_gateway_token"],
        stage_rules={(r["cohort_id"], r["software_type"]): StageRule(r["stage_salt"], r["stage_threshold"])
                     for r in state["stage_rules"]})


_TYPE_SETS: dict[tuple[str, ...], frozenset[str]] = {}  # a fleet shares a handful of these


def _types(names) -> frozenset[str]:
    key = tuple(sorted(names))
    found = _TYPE_SETS.get(key)
    if found is None:
        found = _TYPE_SETS[key] = frozenset(key)
    return found


def device_view(row) -> DeviceView:
    return DeviceView(serial=row["serial"], hardware_version=row["hardware_version"], cohort_id=row["cohort_id"],
                      staged=_types(row["staged"]), override_release_id=row["release_override_id"],
                      unstaged=_types(row["unstaged"]))


@dataclass(slots=True)
class KeyInfo:
    project_id: int
    cohort_override: int | None
