"""Write-behind buffer of device check-ins.

A poll only records (serial, hardware, software type, version) in a dict; a background task
writes the batch in one transaction at least once per interval. Repeated polls of one device
within an interval coalesce into one row, and a device whose hardware and version are what this
process last wrote, less than `last_seen_granularity` ago, is not written again: the write rate
follows change, not polls. When the buffer holds `max_size` devices, pollers wait for the next
flush (back-pressure) instead of dropping check-ins.

Reports of one device may reach several workers within a flush interval, and their flushes may
land in any order. Each row carries the time it was received, by which the database orders them
(the newest report sets the current version, history is read in receive order); a worker that
buffers a report while another worker holds a different one of the same device unwritten marks
its row contested, so that it is written even when it matches what the database holds then.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import time

import asyncpg

from gateway.aio import cancel_and_wait
from gateway.memory.seen import CONTESTED, DEFAULT_ENTRIES, SKIP
from gateway.memory.seen import table as written_table
from gateway.metrics import METRICS
from gateway.store import checkins as checkins_store

log = logging.getLogger(__name__)

_MAX_VERSIONS = 8  # version changes kept per device between two flushes
_SLICE = 2_000  # rows per write statement: the event loop is blocked while one is encoded (~4 ms)


class CheckinBuffer:
    def __init__(self, pool: asyncpg.Pool | None, *, interval: float = 1.0, max_size: int = 50_000,
                 last_seen_granularity: float = 300.0, remember: int = DEFAULT_ENTRIES, parallel: int = 2):
        self.pool = pool
        self.interval = interval
        self.max_size = max_size
        self.last_seen_granularity = last_seen_granularity
        self.parallel = parallel  # connections a flush writes on at once
        self._rows: dict[tuple[int, str, str], tuple] = {}
        # what the database holds per device, as far as the gateway knows: hash of (hardware,
        # version) and when it was written; filled by the flushes and `preload`s of every worker
        # (the table is shared between the forked workers), bounded by `remember`
        self._written = written_table(remember)
        self.preloaded = 0
        self.skipped = 0
        self._oldest = 0.0  # when the oldest check-in now buffered arrived
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task | None = None
        self._preload_task: asyncio.Task | None = None
        self._flush_lock = asyncio.Lock()
        self._kick = asyncio.Event()

    def oldest_age(self) -> float:
        """Seconds the oldest buffered check-in has waited (the write-behind lag)."""
        return time.time() - self._oldest if self._rows else 0.0

    def __len__(self) -> int:
        return len(self._rows)

    def known(self) -> int:
        """Check-in keys whose stored state the gateway knows (written or preloaded by any worker)."""
        return len(self._written)

    def add(self, project_id: int, serial: str, hardware_version: str | None, software_type: str,
            version: str | None, protocol: str) -> None:
        """Record a check-in; never blocks (see `room`)."""
        # a handful of distinct values repeat across the fleet: share one object each
        software_type = sys.intern(software_type)
        if hardware_version is not None:
            hardware_version = sys.intern(hardware_version)
        if version is not None:
            version = sys.intern(version)
        key = (project_id, serial, software_type)
        now = time.time()
        state = self._written.admit(hash(key), hash((hardware_version, version)), now, self.last_seen_granularity)
        if state == SKIP:
            self.skipped += 1
            return
        if not self._rows:
            self._oldest = now
        # keep every version the device went through since the last flush, not just the last
        before = self._rows.get(key)
        versions = before[4] if before is not None else ()
        if version and (not versions or versions[-1] != version):
            versions = (versions + (version,))[-_MAX_VERSIONS:]
        contested = state == CONTESTED or (before is not None and before[7])
        self._rows[key] = (project_id, serial, hardware_version, software_type, versions, protocol, now, contested)
        if len(self._rows) >= self.max_size:
            self._room.clear()
            self._kick.set()

    @property
    def accepting(self) -> bool:
        return self._room.is_set()

    async def room(self) -> None:
        """Wait until the buffer accepts more check-ins (immediate unless it is full)."""
        if not self._room.is_set():
            await self._room.wait()

    def start(self, *, preload: bool = True) -> None:
        self._task = asyncio.create_task(self._run())
        if preload:
            self._preload_task = asyncio.create_task(self.preload())

    async def preload_done(self) -> None:
        """Wait for the start-up preload (if any) to finish."""
        if self._preload_task is not None:
            await asyncio.shield(self._preload_task)

    async def preload(self) -> int:
        """Learn what the database holds for devices seen within the last-seen granularity, so
        that after a start their unchanged polls are not written again (a fleet polling every
        minute would otherwise be rewritten in full by every new process)."""
        try:
            async with self.pool.acquire() as conn:
                room = self._written.max_entries
                recent = await checkins_store.count_recent_checkins(conn, self.last_seen_granularity)
                if recent and len(self._written) >= min(recent, room):
                    return 0  # a restarted worker: the table the workers share knows them already
                # sized for the whole fleet, not just its recent part: growing the table later
                # rehashes it in Python, a pause of up to a second at a million devices (e.g. when a
                # fleet comes back after an outage longer than the granularity)
                self._written.reserve(min(max(recent, await checkins_store.estimated_checkin_keys(conn)), room))
                async for pid, serial, sw, hw, version, seen in checkins_store.recent_checkins(conn, self.last_seen_granularity):
                    if self.preloaded >= room:
                        break
                    self._written.put(hash((pid, serial, sw)), hash((hw, version)), seen)
                    self.preloaded += 1
        except asyncio.CancelledError:
            raise
        except Exception as e:  # an optimisation only: without it, the first polls are written
            log.warning("check-in state preload stopped after %d devices: %s", self.preloaded, type(e).__name__)
        return self.preloaded

    async def set_interval(self, seconds: float) -> None:
        """Flush every `seconds` from now on (the wait under way ends; a flush under way finishes)."""
        self.interval = seconds
        if self._task is not None and not self._task.done():
            async with self._flush_lock:
                await cancel_and_wait(self._task)
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._kick.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            self._kick.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("check-in flush failed; %d rows kept for retry", len(self._rows))
                await asyncio.sleep(min(self.interval, 1.0))

    async def flush(self) -> int:
        """Write everything buffered now, in slices on up to `parallel` connections; the rows of a
        slice that failed go back, merged with newer ones (committed slices are not written twice)."""
        async with self._flush_lock:
            if not self._rows:
                return 0
            batch, self._rows = self._rows, {}
            oldest, self._oldest = self._oldest, 0.0
            self._room.set()
            t0 = time.perf_counter()
            keys = list(batch)
            # in slices, so that the rows, their parameters and the server's sorts stay small, and
            # the event loop is never blocked long preparing one
            parts = [keys[i:i + _SLICE] for i in range(0, len(keys), _SLICE)]
            committed: list[list] = []
            gate = asyncio.Semaphore(self.parallel)
            written = self._written

            async def write(part: list) -> None:
                async with gate:
                    rows = [batch[k] for k in part]
                    async with self.pool.acquire() as conn:
                        await checkins_store.flush_checkins(conn, rows, last_seen_granularity=self.last_seen_granularity)
                        committed.append(part)  # before the release: a cancel there must not resend it
                for k in part:
                    _pid, _serial, hw, _sw, versions, _proto, ts, _contested = batch[k]
                    written.settle(hash(k), hash((hw, versions[-1] if versions else None)), ts)

            try:
                results = await asyncio.gather(*(write(p) for p in parts), return_exceptions=True)
                error = next((r for r in results if isinstance(r, BaseException)), None)
                if error is not None:
                    raise error
            except BaseException:
                done = {k for part in committed for k in part}
                self._restore({k: v for k, v in batch.items() if k not in done}, oldest)
                raise
            METRICS.observe_flush(time.perf_counter() - t0, len(keys))
            return len(keys)

    def _restore(self, rows: dict, oldest: float) -> None:
        """Put unwritten rows back under what arrived meanwhile, keeping every version in order."""
        if not rows:
            return
        self._oldest = oldest if not self._rows else min(self._oldest, oldest)
        for k, old in rows.items():
            new = self._rows.get(k)
            if new is None:
                self._rows[k] = old
                continue
            versions = old[4]
            for v in new[4]:
                if not versions or versions[-1] != v:
                    versions += (v,)
            self._rows[k] = new[:4] + (versions[-_MAX_VERSIONS:],) + new[5:7] + (old[7] or new[7],)
        if len(self._rows) >= self.max_size:
            self._room.clear()

    async def stop(self) -> None:
        """Stop the timer and write what is left. A flush under way is let finish, not cancelled:
        cancelled while its COMMIT is on the wire, a slice may be committed without the buffer
        knowing, and the last flush would then append its history rows a second time."""
        await cancel_and_wait(self._preload_task)
        async with self._flush_lock:
            await cancel_and_wait(self._task)
        await self.flush()
