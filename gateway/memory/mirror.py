"""The in-memory mirror of everything a poll needs: keys, resolution tables, releases and the
few devices that deviate from their cohort's default answer.

It is never a second source of truth: it loads from Postgres at start and reloads the affected
part when a NOTIFY arrives on `db_store.NOTIFY_CHANNEL`. Objects are rebuilt and swapped whole, so
a poll never sees a half-updated project.
"""
from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from gateway.aio import cancel_and_wait
from gateway.crypto.tokens import hash_token
from gateway.domain import notify
from gateway.memory.views import (  # noqa: F401 - the views are imported from here too
    SERIAL_RE_TEXT,
    DeviceView,
    KeyInfo,
    PayloadView,
    ProjectView,
    ReleaseView,
    build_project_view,
    device_view,
)
from gateway.metrics import METRICS
from gateway.store import db as db_store
from gateway.store import mirror as mirror_store

log = logging.getLogger(__name__)


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
        # the hooks drop per-device caches (memory only) as the message arrives: behind a slow
        # reload, or a pool with no free connection, a DDI device could otherwise be answered
        # from a stale state for as long as that lasts (they run again with the reload)
        msg = notify.parse(payload)
        if msg is not None:
            self._run_hooks(msg)
        self._pending.add(payload)
        self._wake.set()

    def _run_hooks(self, msg: notify.Message) -> None:
        for hook in self.hooks:
            try:
                hook(msg)
            except Exception:  # a hook must not stop the others, nor the listener
                log.exception("change notification hook failed on %r", msg)

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
            self._run_hooks(m)
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
            devices = {r["serial"]: device_view(r) for r in await mirror_store.load_device_exceptions(conn, project_id)}
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
        devices.update((r["serial"], device_view(r)) for r in rows)
        view.devices = devices

    async def _load_device(self, conn, project_id: int, serial: str) -> None:
        view = self.projects.get(project_id)
        if view is None:
            return
        row = await mirror_store.load_device(conn, project_id, serial)
        if row is None or (row["cohort_id"] == view.default_cohort_id and not row["staged"]
                           and not row["unstaged"] and row["release_override_id"] is None):
            view.devices.pop(serial, None)
        else:
            view.devices[serial] = device_view(row)
