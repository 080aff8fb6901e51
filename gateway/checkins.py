"""Write-behind buffer of device check-ins.

A poll only records (serial, hardware, software type, version) in a dict; a background task
writes the batch in one transaction at least once per interval. Repeated polls of one device
within an interval coalesce into one row. When the buffer holds `max_size` devices, pollers
wait for the next flush (back-pressure) instead of dropping check-ins.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone

import asyncpg

from . import store
from .metrics import METRICS

log = logging.getLogger(__name__)


class CheckinBuffer:
    def __init__(self, pool: asyncpg.Pool | None, *, interval: float = 1.0, max_size: int = 200_000,
                 last_seen_granularity: float = 300.0):
        self.pool = pool
        self.interval = interval
        self.max_size = max_size
        self.last_seen_granularity = last_seen_granularity
        self._rows: dict[tuple[int, str, str], tuple] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task | None = None
        self._flush_lock = asyncio.Lock()
        self._kick = asyncio.Event()

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, project_id: int, serial: str, hardware_version: str | None, software_type: str,
            version: str | None, protocol: str) -> None:
        """Record a check-in; never blocks (see `room`)."""
        self._rows[(project_id, serial, software_type)] = (
            project_id, serial, hardware_version, software_type, version, protocol, time.time())
        if len(self._rows) >= self.max_size:
            self._room.clear()
            self._kick.set()

    async def room(self) -> None:
        """Wait until the buffer accepts more check-ins (immediate unless it is full)."""
        if not self._room.is_set():
            await self._room.wait()

    def start(self) -> None:
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
        """Write everything buffered now; on failure the rows go back (newer ones win)."""
        async with self._flush_lock:
            if not self._rows:
                return 0
            batch, self._rows = self._rows, {}
            self._room.set()
            t0 = time.perf_counter()
            rows = [(pid, serial, hw, sw, ver, proto, datetime.fromtimestamp(ts, timezone.utc))
                    for pid, serial, hw, sw, ver, proto, ts in batch.values()]
            try:
                async with self.pool.acquire() as conn:
                    await store.flush_checkins(conn, rows, last_seen_granularity=self.last_seen_granularity)
            except BaseException:
                for k, v in batch.items():
                    self._rows.setdefault(k, v)
                if len(self._rows) >= self.max_size:
                    self._room.clear()
                raise
            METRICS.observe_flush(time.perf_counter() - t0, len(rows))
            return len(rows)

    async def stop(self) -> None:
        """Stop the timer and write what is left."""
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()
