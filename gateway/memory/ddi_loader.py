"""Batched loading of DDI device state: the first polls of many devices in one event-loop turn
share one database round trip instead of one each (after a restart, a whole fleet is new to
every worker). A TargetToken is checked before its device's state is loaded (`known_token` from
memory, else `lookup_token`: index probes, batched the same way), so a request that fails
authentication neither builds nor caches a state."""
from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable, Hashable

import asyncpg
from aiohttp import web

from gateway.domain.ddi_actions import DeviceState
from gateway.memory.ddi_cache import DeviceCache, state_from_row
from gateway.memory.mirror import ProjectView
from gateway.metrics import METRICS
from gateway.store import ddi as ddi_store

_MAX_BATCH = 500  # serials per query


class _Batches:
    """Coalesces concurrent `get` calls made in the same loop iteration into one
    `fetch(conn, project_id, items)` per project (a dict by item; a missing item gets `missing`)."""

    def __init__(self, pool: Callable[[], asyncpg.Pool], fetch, missing=None):
        self._pool = pool
        self._fetch = fetch
        self._missing = missing
        self._pending: dict[tuple[int, Hashable], asyncio.Future] = {}
        self._tasks: set[asyncio.Task] = set()
        self.batches = 0

    async def get(self, project_id: int, item: Hashable):
        key = (project_id, item)
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

    async def _run(self, batch: dict[tuple[int, Hashable], asyncio.Future]) -> None:
        self.batches += 1
        by_project: dict[int, list] = {}
        for pid, item in batch:
            by_project.setdefault(pid, []).append(item)
        try:
            async with self._pool().acquire() as conn:
                for pid, items in by_project.items():
                    rows = await self._fetch(conn, pid, items)
                    for item in items:
                        fut = batch[(pid, item)]
                        if not fut.done():
                            fut.set_result(rows.get(item, self._missing))
        except BaseException as e:
            for fut in batch.values():
                if not fut.done():
                    fut.set_exception(e if isinstance(e, Exception) else ConnectionError("state load stopped"))
            if not isinstance(e, Exception):
                raise


class StateLoader:
    """Device states (and TargetToken checks), each kind batched per loop iteration (`_Batches`)."""

    def __init__(self, pool: Callable[[], asyncpg.Pool]):
        self._states = _Batches(pool, ddi_store.load_device_states)
        self._tokens = _Batches(pool, ddi_store.token_owners, (False, False))

    @property
    def batches(self) -> int:
        return self._states.batches

    async def load(self, project_id: int, serial: str) -> asyncpg.Record | None:
        """The device's state row, or None for a serial the database does not know."""
        return await self._states.get(project_id, serial)

    async def check_token(self, project_id: int, serial: str, token_hash: str) -> tuple[bool, bool]:
        """(whether the device has this TargetToken, whether any device of the project has it)."""
        return await self._tokens.get(project_id, (serial, token_hash))


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


def known_token(res, project: ProjectView, serial: str, token_hash: str) -> bool | None:
    """Whether `token_hash` is the device's TargetToken, when memory can tell: by its cached state,
    or a rejection remembered (`ddi_cache.rejected`); None when only the database can. Keeps nothing."""
    cache: DeviceCache = res.ddi_cache
    cache.follow(res.mirror.reconnects)
    state = cache.peek((project.id, serial), project.strings)
    if state is not None:
        return state.token_hash is not None and hmac.compare_digest(state.token_hash, token_hash)
    if cache.rejected.rejected(project.id, token_hash, serial, time.monotonic()):
        return False
    return None


async def lookup_token(res, project: ProjectView, serial: str, token_hash: str) -> bool:
    """Ask the database whether `token_hash` is the device's TargetToken: index probes batched with
    concurrent ones, no device state built or cached. A token it does not accept is remembered."""
    rejected = res.ddi_cache.rejected
    epoch = rejected.epoch(project.id)
    owner, known = await res.ddi_loader.check_token(project.id, serial, token_hash)
    if not owner:
        rejected.reject(project.id, token_hash, serial if known else None, epoch, time.monotonic())
    return owner
