"""Per-device DDI state kept in memory, so that a steady-state DDI poll needs no database.

A device's state is loaded from Postgres on its first poll in a process and kept in a bounded LRU.
Whoever changes it durably (feedback, configData, a new action, the management API) drops the
local entry and sends `ddi:<project>:<serial>:<origin>`; other processes drop theirs when the
mirror hands them that message (or `device:<project>:<serial>`). A process ignores its own
messages: it already dropped the entry when it wrote.

Only an authenticated device gets an entry: a TargetToken is checked first (`peek`, the
TargetTokens the database rejected in `rejected`, else one index probe), see ddi_loader.
"""
from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.domain import notify
from gateway.domain.ddi_actions import ActionView, DeviceState
from gateway.memory.auth_guard import RejectedTokens
from gateway.metrics import METRICS

if TYPE_CHECKING:
    from gateway.memory.ddi_shared import SharedStates


def unknown() -> DeviceState:
    """The state of a serial the database does not know yet (one object per device: answers
    rendered for it are kept on it)."""
    return DeviceState(None, None, None, {}, None, True, {}, {}, frozenset())


def state_from_row(row) -> DeviceState:
    if row is None:
        return unknown()
    return DeviceState(
        device_id=row["id"], hardware_version=row["hardware_version"], software_type=row["ddi_software_type"],
        versions=row["versions"], token_hash=row["ddi_token_hash"], config_requested=row["ddi_config_requested"],
        actions={a["software_type"]: ActionView(
            id=a["id"], release_id=a["release_id"], payload_id=a["payload_id"], software_type=a["software_type"],
            version=a["version"], status=a["status"], cancel_rejected=a["cancel_rejected"],
            retrieved=a["retrieved"]) for a in row["open_actions"]},
        installed={i["software_type"]: (i["id"], i["payload_id"]) for i in row["installed"]},
        blocked=frozenset(row["blocked"]))


class DeviceCache:
    """Bounded LRU of DeviceState keyed by (project id, serial), in front of the states the
    host's processes share (`ddi_shared`, when given)."""

    def __init__(self, max_size: int = 200_000, shared: SharedStates | None = None):
        self.max_size = max_size
        self.shared = shared
        self._items: OrderedDict[tuple[int, str], DeviceState] = OrderedDict()
        # bumped by every invalidation: a load that overlapped one must not be cached
        self.generation = 0
        self.origin = secrets.token_hex(6)
        self.loads = 0
        self.shared_hits = 0
        self.epoch = 0  # the mirror's reconnect count this cache is valid for
        self.rejected = RejectedTokens()  # TargetTokens the database did not accept

    def follow(self, epoch: int) -> None:
        """Forget everything when the mirror reconnected: notifications sent meanwhile were lost."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.generation += 1
            self._items.clear()
            self.rejected.clear()
            if self.shared is not None:
                self.shared.clear()

    def __len__(self) -> int:
        return len(self._items)

    def shared_len(self) -> int:
        return len(self.shared) if self.shared is not None else 0

    def get(self, key: tuple[int, str], learn: Callable[[], Iterable[str]] | None = None) -> DeviceState | None:
        """The state kept here, else the shared one (`learn`: strings to know it by, see ddi_shared)."""
        state = self._items.get(key)
        if state is not None:
            self._items.move_to_end(key)
        elif self.shared is not None:
            state = self.shared.get(*key, learn)
            if state is not None:
                self.shared_hits += 1
                METRICS.inc("ota_gateway_ddi_shared_hits")
                self._keep(key, state)
        return state

    def peek(self, key: tuple[int, str], learn: Callable[[], Iterable[str]] | None = None) -> DeviceState | None:
        """Like `get`, for a caller not authenticated yet: nothing is kept or moved."""
        state = self._items.get(key)
        if state is None and self.shared is not None:
            state = self.shared.get(*key, learn)
        return state

    def token(self) -> tuple[int, int]:
        """What `put` checks: no invalidation here, nor in the shared table, since this was taken."""
        return self.generation, self.shared.generation if self.shared is not None else 0

    def put(self, key: tuple[int, str], state: DeviceState, token: tuple[int, int]) -> None:
        """Cache a state loaded when `token` was current (dropped if anything was invalidated since)."""
        if token[0] != self.generation:
            return
        self._keep(key, state)
        if self.shared is not None:
            self.shared.put(*key, state, token[1])

    def _keep(self, key: tuple[int, str], state: DeviceState) -> None:
        self._items[key] = state
        self._items.move_to_end(key)
        if len(self._items) > self.max_size:
            self._items.popitem(last=False)

    def invalidate(self, key: tuple[int, str]) -> None:
        self.generation += 1
        self._items.pop(key, None)
        if self.shared is not None:
            self.shared.invalidate(*key)

    def message(self, project_id: int, serial: str) -> str:
        """The NOTIFY payload telling other processes that this device's state changed."""
        return notify.ddi(project_id, serial, self.origin)

    def on_message(self, msg: notify.Message) -> None:
        """Mirror hook: drop entries named by `ddi` (from other processes) and `device` messages;
        a `device` message (a TargetToken set, too) voids the project's rejected tokens."""
        if msg.kind == "device" or (msg.kind == "ddi" and msg.origin != self.origin):
            self.invalidate((msg.project, msg.serial))
        if msg.kind in ("device", "devices"):
            self.rejected.forget(msg.project)


DDI_CACHE = web.AppKey("ddi_cache", DeviceCache)
