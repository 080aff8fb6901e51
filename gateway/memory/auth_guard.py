"""What a failed authentication on a device route may cost, bounded.

`RejectedTokens`: the DDI TargetTokens the database did not accept, so that a device (or anyone)
repeating a bad token costs no further query. `FailureLimits`: failures per source address, so
that a source past its allowance is answered 429 before any database work (what it presents
that memory can check still works: a limit is on failing, not on polling). Both live in memory,
per process (with N workers a source gets N allowances), and are bounded in entries.
"""
from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict

from aiohttp import web

_OVERFLOW = "*"  # the share of the sources past max_sources (not an address)


def source_of(remote: str | None) -> str:
    """The source failures are counted for: an IPv4 address as it is, an IPv6 one by its /64 (what
    one host gets; counting single addresses would give it 2^64 allowances)."""
    if not remote or ":" not in remote:
        return remote or "?"
    try:
        ip = ipaddress.IPv6Address(remote)
    except ValueError:
        return remote
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False).network_address) + "/64"


class FailureLimits:
    """Authentication failures per source in fixed windows of `window` seconds. A source that
    failed `limit` times in the current window is limited until the window turns. At most
    `max_sources` sources are counted per window; the sources met after that share one allowance
    (many addresses failing at once is an attack: they are limited together, the rest are not)."""

    def __init__(self, limit: int = 120, window: float = 60.0, max_sources: int = 10_000):
        self.limit = limit
        self.window = window
        self.max_sources = max_sources
        self._current = -1
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._counts)

    def _key(self, remote: str | None, now: float) -> str:
        w = int(now // self.window)
        if w != self._current:
            self._current, self._counts = w, {}
        source = source_of(remote)
        return source if source in self._counts or len(self._counts) < self.max_sources else _OVERFLOW

    def _retry(self, now: float) -> int:
        return max(1, math.ceil((self._current + 1) * self.window - now))

    def retry_after(self, remote: str | None, now: float | None = None) -> int | None:
        """Seconds until the source may try again, or None when it is not limited."""
        now = time.monotonic() if now is None else now
        key = self._key(remote, now)  # first: it may start a new window (a new dict)
        if self._counts.get(key, 0) < self.limit:
            return None
        return self._retry(now)

    def failed(self, remote: str | None, now: float | None = None) -> int | None:
        """Count a failed authentication; the seconds until the source may try again when this one
        took it past its limit (the answer is then 429), else None."""
        now = time.monotonic() if now is None else now
        key = self._key(remote, now)
        n = self._counts[key] = self._counts.get(key, 0) + 1
        return self._retry(now) if n > self.limit else None


AUTH_FAILURES = web.AppKey("auth_failures", FailureLimits)


class RejectedTokens:
    """Bounded, expiring memory of TargetToken hashes the database did not accept: for any device
    of a project (no device has the token) or for one serial (the token is other devices'). A
    token becomes valid only by a management write, whose `device` message voids the project's
    entries (`forget`); a lookup that overlapped one is not remembered (`epoch`)."""

    def __init__(self, max_entries: int = 10_000, ttl: float = 600.0):  # about 400 B an entry
        self.max_entries = max_entries
        self.ttl = ttl
        # (project, token hash, serial or "" for any) -> (expiry, the epoch it was looked up in)
        self._items: OrderedDict[tuple[int, str, str], tuple[float, tuple[int, int]]] = OrderedDict()
        self._epochs: dict[int, int] = {}
        self._clears = 0

    def __len__(self) -> int:
        return len(self._items)

    def epoch(self, project_id: int) -> tuple[int, int]:
        """What `reject` checks: nothing of the project forgotten since this was taken."""
        return self._clears, self._epochs.get(project_id, 0)

    def rejected(self, project_id: int, token_hash: str, serial: str, now: float | None = None) -> bool:
        """Whether the token is known not to authenticate this device."""
        now = time.monotonic() if now is None else now
        epoch = self.epoch(project_id)
        return (self._live((project_id, token_hash, ""), epoch, now)
                or self._live((project_id, token_hash, serial), epoch, now))

    def _live(self, key: tuple[int, str, str], epoch: tuple[int, int], now: float) -> bool:
        entry = self._items.get(key)
        if entry is None:
            return False
        if entry[0] <= now or entry[1] != epoch:
            del self._items[key]
            return False
        return True

    def reject(self, project_id: int, token_hash: str, serial: str | None, epoch: tuple[int, int],
               now: float | None = None) -> None:
        """Remember a token the database did not accept for `serial` (None: for any device of the
        project), unless the project's tokens may have changed since `epoch` was taken."""
        if epoch != self.epoch(project_id):
            return
        now = time.monotonic() if now is None else now
        key = (project_id, token_hash, serial or "")
        self._items[key] = (now + self.ttl, epoch)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def forget(self, project_id: int) -> None:
        """A device's token changed: what was rejected in the project may be valid now."""
        self._epochs[project_id] = self._epochs.get(project_id, 0) + 1

    def clear(self) -> None:
        self._clears += 1
        self._items.clear()
