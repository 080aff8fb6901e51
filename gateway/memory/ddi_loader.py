"""Batched loading of DDI device state: the first polls of many devices in one event-loop turn
share one database round trip instead of one each (after a restart, a whole fleet is new to
every worker)."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
from aiohttp import web

from gateway.domain.ddi_actions import DeviceState
from gateway.memory.ddi_cache import DeviceCache, state_from_row
from gateway.memory.mirror import ProjectView
from gateway.metrics import METRICS
from gateway.store import ddi as ddi_store

_MAX_BATCH = 500  # serials per query


class StateLoader:
    """Coalesces concurrent `load` calls made in the same loop iteration into one query per project."""

    def __init__(self, pool: Callable[[], asyncpg.Pool]):
        self._pool = pool
        self._pending: dict[tuple[int, str], asyncio.Future] = {}
        self._tasks: set[asyncio.Task] = set()
        self.batches = 0

    async def load(self, project_id: int, serial: str) -> asyncpg.Record | None:
        """The device's state row, or None for a serial the database does not know."""
        key = (project_id, serial)
        fut = self._pending.get(key)
        if fut is None:
            loop = asyncio.get_running_loop()
            if not self._pending:  # the first miss of this turn: collect the others until the next one
                loop.call_soon(self._dispatch)
            fut = self._pending[key] = loop.create_future()
            fut.add_done_callback(_retrieve)  # an error nobody awaits any more is not "never retrieved"
        # shielded: one caller going away (client disconnect) must not cancel the others' answer
        return await asyncio.shield(fut)

    def _dispatch(self) -> None:
        batch, self._pending = self._pending, {}
        keys = list(batch)
        for i in range(0, len(keys), _MAX_BATCH):
            task = asyncio.get_running_loop().create_task(self._run({k: batch[k] for k in keys[i:i + _MAX_BATCH]}))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: dict[tuple[int, str], asyncio.Future]) -> None:
        self.batches += 1
        by_project: dict[int, list[str]] = {}
        for pid, serial in batch:
            by_project.setdefault(pid, []).append(serial)
        try:
            async with self._pool().acquire() as conn:
                for pid, serials in by_project.items():
                    rows = await ddi_store.load_device_states(conn, pid, serials)
                    for serial in serials:
                        fut = batch[(pid, serial)]
                        if not fut.done():
                            fut.set_result(rows.get(serial))
        except BaseException as e:
            for fut in batch.values():
                if not fut.done():
                    fut.set_exception(e if isinstance(e, Exception) else ConnectionError("state load stopped"))
            if not isinstance(e, Exception):
                raise


def _retrieve(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()


DDI_LOADER = web.AppKey("ddi_loader", StateLoader)


async def device_state(res, project: ProjectView, serial: str) -> DeviceState:
    """The cached state (this process's, else the one the host's processes share); loaded from the
    database on the first poll of a serial on this host. `res` has the process's `mirror`,
    `ddi_cache` and `ddi_loader` (services.Resources)."""
    project_id = project.id
    cache: DeviceCache = res.ddi_cache
    cache.follow(res.mirror.reconnects)
    state = cache.get((project_id, serial), project.strings)
    if state is None:
        token = cache.token()
        state = state_from_row(await res.ddi_loader.load(project_id, serial))
        cache.loads += 1
        METRICS.inc("ota_gateway_ddi_state_loads")
        cache.put((project_id, serial), state, token)
    return state
