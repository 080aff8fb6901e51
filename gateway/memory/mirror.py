"""The in-memory mirror of everything a poll needs: keys, resolution tables, releases and the
few devices that deviate from their cohort's default answer.

It is never a second source of truth: it loads from Postgres at start and reloads the affected
part when a NOTIFY arrives on `db_store.NOTIFY_CHANNEL`. Objects are rebuilt and swapped whole, so
a poll never sees a half-updated project.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from urllib.parse import quote

import asyncpg

from gateway.aio import cancel_and_wait
from gateway.crypto import ed25519, manifests
from gateway.crypto.tokens import hash_token
from gateway.domain import notify, resolution
from gateway.metrics import METRICS
from gateway.store import db as db_store
from gateway.store import mirror as mirror_store

log = logging.getLogger(__name__)

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
    staged: bool
    override_release_id: int | None


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
            cohort, staged, override_id = self.default_cohort_id, False, None
        else:
            cohort, staged, override_id = dev.cohort_id, dev.staged, dev.override_release_id
        if cohort_override is not None:
            cohort = cohort_override
        key = (software_type, hardware_version, current_version, cohort, staged, override_id)
        decision = self._memo.get(key)
        if decision is None:
            override = self.releases[override_id].domain if override_id in self.releases else None
            if override is not None and override.software_type != software_type:
                override = None
            decision = self._resolve(cohort, software_type, hardware_version, current_version, staged, override)
            if current_version is None or len(current_version) <= _MEMO_VERSION_LEN:
                if len(self._memo) >= _MEMO_LIMIT:
                    self._memo.clear()
                self._memo[key] = decision
        return decision, dev

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
        ddi_gateway_token=p["ddi_gateway_token"])


def _device_view(row) -> DeviceView:
    return DeviceView(serial=row["serial"], hardware_version=row["hardware_version"], cohort_id=row["cohort_id"],
                      staged=row["staged"], override_release_id=row["release_override_id"])


@dataclass(slots=True)
class KeyInfo:
    project_id: int
    cohort_override: int | None


class Mirror:
    """All projects' views plus the key index; reloads on notifications."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.projects: dict[int, ProjectView] = {}
        self.by_slug: dict[str, ProjectView] = {}
        self.keys: dict[str, KeyInfo] = {}
        self._raw_keys: dict[str, KeyInfo] = {}
        self.loaded = False
        self.reloads = 0
        # called with every parsed notify.Message, e.g. by the DDI device cache (ddi_cache)
        self.hooks: list = []
        self.last_reload_seconds = 0.0
        self._listener: asyncpg.Connection | None = None
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._pool: asyncpg.Pool | None = None
        self._stopping = False
        self._apply_lock = asyncio.Lock()
        self._reconnect: asyncio.Task | None = None
        self.connected = False
        self.reconnects = 0

    async def start(self, pool: asyncpg.Pool) -> None:
        """LISTEN first, then load, so no change can slip between the two."""
        self._pool = pool
        await self._listen()
        self.connected = True
        await self.load_all()
        self._task = asyncio.create_task(self._reload_loop())

    async def _listen(self) -> None:
        self._listener = await asyncpg.connect(self.dsn)
        await self._listener.add_listener(db_store.NOTIFY_CHANNEL, self._on_notify)
        self._listener.add_termination_listener(self._on_listener_lost)

    def _on_listener_lost(self, _conn) -> None:
        """The database went away: keep serving from memory, reconnect in the background and
        reload everything once back, since notifications sent meanwhile are lost."""
        if self._stopping:
            return
        self.connected = False
        if self._reconnect is None or self._reconnect.done():
            self._reconnect = asyncio.get_event_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        delay = 0.2
        while not self._stopping:
            try:
                await self._listen()
                await self.load_all()
                # counted, then reported connected, only once the reload is done: what changed
                # while the notifications were lost is in memory before /readyz says so
                self.reconnects += 1
                self.connected = True
                log.info("database connection restored; mirror reloaded")
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as e:
                log.warning("database unreachable (%s); retrying in %.1fs", type(e).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def stop(self) -> None:
        self._stopping = True
        if self._reconnect is not None:
            self._reconnect.cancel()
        await cancel_and_wait(self._task)
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()

    def _on_notify(self, _conn, _pid, _channel, payload: str) -> None:
        self._pending.add(payload)
        self._wake.set()

    async def _reload_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self._pending = self._pending, set()
            try:
                await self.apply(pending)
            except Exception:  # keep serving the old view; retry the batch shortly
                log.exception("mirror reload failed")
                self._pending |= pending
                await asyncio.sleep(0.5)
                self._wake.set()

    async def apply(self, messages: set[str]) -> None:
        """Reload what the messages name (domain.notify); a message not understood reloads
        everything."""
        # one reload at a time: two overlapping loads could finish out of order and leave the
        # older snapshot in place (a request's read-your-writes refresh racing a NOTIFY reload)
        async with self._apply_lock:
            await self._apply(messages)

    async def _apply(self, messages: set[str]) -> None:
        t0 = time.perf_counter()
        parsed = [(m, notify.parse(m)) for m in sorted(messages)]
        async with self._pool.acquire() as conn:
            unknown = next((m for m, msg in parsed if msg is None), None)
            if unknown is not None:
                # a newer release's message (rolling upgrade) or garbage: whatever it meant,
                # reloading everything covers it
                log.warning("change notification not understood (%r): reloading everything", unknown[:80])
                await self._load_all(conn)
                self.reconnects += 1  # per-device caches follow this counter and drop everything
            else:
                await self._apply_parsed(conn, [msg for _, msg in parsed])
        self.reloads += 1
        self.last_reload_seconds = time.perf_counter() - t0
        METRICS.inc("ota_gateway_mirror_reloads")
        METRICS.observe("ota_gateway_mirror_reload_duration_seconds", (), self.last_reload_seconds)

    async def _apply_parsed(self, conn, messages: list[notify.Message]) -> None:
        if any(m.kind == "keys" for m in messages):
            await self._load_keys(conn)
        for m in messages:
            for hook in self.hooks:
                hook(m)
            if m.kind == "project":
                await self._load_project(conn, m.project, keep_devices=True)
            elif m.kind == "device":
                await self._load_device(conn, m.project, m.serial)
            elif m.kind == "devices":
                await self._load_project(conn, m.project, keep_devices=False)
            elif m.kind == "cohort-devices":
                await self._load_cohort_devices(conn, m.project, m.cohort)

    async def load_all(self) -> None:
        async with self._apply_lock, self._pool.acquire() as conn:
            await self._load_all(conn)
        self.loaded = True

    async def _load_all(self, conn) -> None:
        await self._load_keys(conn)
        for p in await mirror_store.load_projects(conn):
            await self._load_project(conn, p["id"], keep_devices=False)

    async def _load_keys(self, conn) -> None:
        self.keys = {r["secret_hash"]: KeyInfo(r["project_id"], r["cohort_override_id"])
                     for r in await mirror_store.load_keys(conn)}
        self._raw_keys = {}  # a revoked key must not survive in the shortcut

    def key_info(self, raw: str) -> KeyInfo | None:
        """The project key `raw` belongs to. Keys are few and reused by every device, so a valid
        one is remembered and the poll path hashes it once per process, not once per poll; an
        invalid one is never remembered (random guesses must not grow memory)."""
        info = self._raw_keys.get(raw)
        if info is None and raw.isascii():
            info = self.keys.get(hash_token(raw))
            if info is not None and len(self._raw_keys) < 10_000:
                self._raw_keys[raw] = info
        return info

    async def _load_project(self, conn, project_id: int, *, keep_devices: bool) -> None:
        state = await mirror_store.load_project_state(conn, project_id)
        if state["project"] is None:
            return
        old = self.projects.get(project_id)
        if keep_devices and old is not None:
            devices = old.devices
        else:
            devices = {r["serial"]: _device_view(r) for r in await mirror_store.load_device_exceptions(conn, project_id)}
        view = build_project_view(state, devices)
        self.projects[project_id] = view
        self.by_slug[view.slug] = view

    async def _load_cohort_devices(self, conn, project_id: int, cohort_id: int) -> None:
        """Re-mirror one cohort's exceptions (after staging), leaving the rest of the fleet alone."""
        view = self.projects.get(project_id)
        if view is None:
            return
        rows = await mirror_store.load_cohort_exceptions(conn, project_id, cohort_id)
        devices = {s: d for s, d in view.devices.items() if d.cohort_id != cohort_id}
        devices.update((r["serial"], _device_view(r)) for r in rows)
        view.devices = devices

    async def _load_device(self, conn, project_id: int, serial: str) -> None:
        view = self.projects.get(project_id)
        if view is None:
            return
        row = await mirror_store.load_device(conn, project_id, serial)
        if row is None or (row["cohort_id"] == view.default_cohort_id and not row["staged"]
                           and row["release_override_id"] is None):
            view.devices.pop(serial, None)
        else:
            view.devices[serial] = _device_view(row)
