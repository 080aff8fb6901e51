"""DDI device states shared by every worker of a host, for the common device.

Each worker keeps full `DeviceState`s in its own LRU (`ddi_state.DeviceCache`), loaded from the
database on a device's first poll in that worker. With N workers that is N loads per device, and a
fleet larger than the LRU reads the database on most polls. Most devices are quiet: registered,
no open action, no failed release, no device token, one software type. Their state is nine
machine words here, in anonymous shared memory made by the supervisor before it forks: a state
one worker loaded, every worker (and a restarted one) reads without the database.

Strings (hardware version, software type, version) are stored as their hash; each process maps
hashes back to the strings it has met itself or finds in the device's project (its hardware
versions, software types and release versions: a few hundred in a fleet), and treats any other
hash as a miss. Processes do not lock. A slot's last word checks the others (and the serial,
by a second hash and a CRC): a reader that meets a slot being written, or two writers racing on
one slot, sees a mismatch and loads from the database. A shared generation word changes on every
invalidation, and a state loaded while one happened is not published (nor kept, when the
invalidation came between the check and the write).
"""
from __future__ import annotations

import mmap
import os
import zlib
from collections.abc import Callable, Iterable

from gateway.domain.ddi_actions import DeviceState

DEFAULT_ENTRIES = 1_000_000
_MIN_SLOTS = 1 << 12
_HEAD = mmap.PAGESIZE // 8  # the first page: generation, entries; the slots start on the next page
_W = 9  # key, id*2+config_requested, hardware, ddi software type, software type, version,
#         installed action, installed payload, check
_MASK63 = (1 << 63) - 1


def _slots(entries: int) -> int:
    n = _MIN_SLOTS
    while n < 2 * entries:
        n <<= 1
    return n


def _key(project_id: int, serial: str) -> int:
    return hash((project_id, serial)) or 1  # 0 marks an empty slot


def _check(project_id: int, serial: str, fields) -> int:
    """A slot's last word: its fields and, by a second hash and a CRC, the serial they belong to."""
    return hash((serial, project_id, zlib.crc32(serial.encode()), *fields))


class SharedStates:
    """Open-addressing table of quiet DDI device states keyed by (project id, serial)."""

    def __init__(self, max_entries: int = DEFAULT_ENTRIES):
        self.max_entries = max_entries
        slots = _slots(max_entries)
        # MAP_SHARED | MAP_ANONYMOUS: kept across fork; pages cost memory only once touched
        self._mm = mmap.mmap(-1, 8 * (_HEAD + _W * slots))
        self._words = memoryview(self._mm).cast("q")
        self._mask = slots - 1
        self._strings: dict[int, str] = {}  # this process's: hash -> string

    def __len__(self) -> int:
        return self._words[1]

    @property
    def generation(self) -> int:
        return self._words[0]

    def _bump(self) -> None:
        # distinct per process: two processes bumping at once never write the same value back
        w = self._words
        w[0] = (w[0] + 1 + (os.getpid() << 24)) & _MASK63

    def _h(self, s: str | None) -> int:
        if s is None:
            return 0
        h = hash(s) | 1
        self._strings[h] = s
        return h

    def _slot(self, key: int) -> int:
        """Word index of `key`'s slot, or of the empty slot where it would go."""
        w, mask = self._words, self._mask
        j = key & mask
        while True:
            i = _HEAD + j * _W
            k = w[i]
            if k == key or k == 0:
                return i
            j = (j + 1) & mask

    def _decode(self, f: list[int]) -> DeviceState | None:
        """The state of a slot's fields, or None when a string hash is one this process has not met."""
        strings = self._strings
        try:
            hw, ddi_sw, sw, version = (strings[h] if h else None for h in f[1:5])
        except KeyError:
            return None
        return DeviceState(
            device_id=f[0] >> 1, hardware_version=hw, software_type=ddi_sw,
            versions={sw: version} if version is not None else {}, token_hash=None,
            config_requested=bool(f[0] & 1), actions={},
            installed={sw: (f[5], f[6] or None)} if f[5] else {}, blocked=frozenset())

    def get(self, project_id: int, serial: str, learn: Callable[[], Iterable[str]] | None = None
            ) -> DeviceState | None:
        """The device's state as some process published it, or None. `learn` names strings the
        caller knows (its project's hardware versions, software types, release versions), tried
        when the slot holds a hash this process has not met."""
        key = _key(project_id, serial)
        i = self._slot(key)
        w = self._words
        if w[i] != key:
            return None
        f = w[i + 1:i + _W].tolist()
        if f[7] != _check(project_id, serial, f[:7]):
            return None
        state = self._decode(f)
        if state is None and learn is not None:
            for s in learn():
                self._h(s)
            state = self._decode(f)  # still None: a string only other processes have met so far
        return state

    def put(self, project_id: int, serial: str, state: DeviceState, generation: int) -> bool:
        """Publish a state loaded from the database while `generation` was current; only quiet
        states are kept (False for the others)."""
        if state.device_id is None or state.actions or state.blocked or state.token_hash is not None:
            return False  # unknown serials too: a check-in may register them without telling DDI
        types = set(state.versions) | set(state.installed)
        if len(types) > 1:
            return False
        sw = next(iter(types), None)
        action, payload = state.installed.get(sw) or (0, 0)
        fields = (state.device_id * 2 + bool(state.config_requested), self._h(state.hardware_version),
                  self._h(state.software_type), self._h(sw), self._h(state.versions.get(sw)),
                  action, payload or 0)
        if generation != self.generation:
            return False
        key = _key(project_id, serial)
        w = self._words
        i = self._slot(key)
        if w[i] == 0:
            if w[1] + 1 > self.max_entries:
                self.clear()
                i = self._slot(key)
            w[1] += 1
        w[i + 8] = 0  # readers see a mismatch until the slot is whole again
        for n, v in enumerate(fields, 1):
            w[i + n] = v
        w[i + 8] = _check(project_id, serial, fields)
        w[i] = key
        if generation != self.generation:  # an invalidation came between the check and the write
            w[i + 8] = 0
            return False
        return True

    def invalidate(self, project_id: int, serial: str) -> None:
        """Forget the device's state (its slot stays reserved for its key)."""
        self._bump()
        key = _key(project_id, serial)
        i = self._slot(key)
        if self._words[i] == key:
            self._words[i + 8] = 0

    def clear(self) -> None:
        """Forget every state (bounded memory, or notifications that may have been missed). The
        slots' pages are given back (they read as zeros again), not written: a cleared table costs
        no memory until it fills again."""
        self._bump()
        start = 8 * _HEAD
        if hasattr(mmap, "MADV_REMOVE"):
            self._mm.madvise(mmap.MADV_REMOVE, start, len(self._mm) - start)
        else:
            zero = bytes(1 << 20)
            for off in range(start, len(self._mm), len(zero)):
                end = min(off + len(zero), len(self._mm))
                self._mm[off:end] = zero[:end - off]
        self._words[1] = 0


_shared: SharedStates | None = None


def share(max_entries: int = DEFAULT_ENTRIES) -> None:
    """Make the table that processes forked from now on use (call before forking workers)."""
    global _shared
    _shared = SharedStates(max_entries) if max_entries > 0 else None


def forget() -> None:
    """Clear the shared table (the supervisor, before it starts a worker while none is running:
    notifications sent while no worker listened were lost)."""
    if _shared is not None:
        _shared.clear()


def table(max_entries: int = DEFAULT_ENTRIES) -> SharedStates | None:
    """The shared table if this process was forked after `share`, else a table of its own (None
    when `max_entries` is 0: no second level)."""
    if _shared is not None:
        return _shared
    return SharedStates(max_entries) if max_entries > 0 else None
