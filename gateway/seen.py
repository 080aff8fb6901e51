"""What the database already holds for each device check-in, kept compactly per process.

A poll that reports what was last written (same hardware and version, written less than the
last-seen granularity ago) needs no write. Remembering that for a million-device fleet in a dict
of tuples would cost ~250 bytes a device; this open-addressing table keeps three machine words
per slot (key hash, value hash, seconds), ~40 bytes a device at its load factor.
"""
from __future__ import annotations

import mmap
from array import array

DEFAULT_ENTRIES = 2_000_000
_EPOCH = 1_600_000_000  # seconds are stored from here in 32 bits (good until 2088)
_MIN_SLOTS = 1 << 14


def _slots(entries: int) -> int:
    n = _MIN_SLOTS
    while n < 2 * entries:  # load factor at most 1/2 keeps linear probes short
        n <<= 1
    return n


class SeenTable:
    """Map of 64-bit key hashes to (64-bit value hash, time written), bounded by `max_entries`."""

    def __init__(self, max_entries: int = 2_000_000, expected: int = 0):
        self.max_entries = max_entries
        self._alloc(_slots(min(expected, max_entries)))

    def _alloc(self, slots: int) -> None:
        self._keys = array("q", bytes(8 * slots))  # 0 marks an empty slot
        self._vals = array("q", bytes(8 * slots))
        self._times = array("i", bytes(4 * slots))
        self._mask = slots - 1
        self.size = 0

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        return sum(a.itemsize * len(a) for a in (self._keys, self._vals, self._times))

    def clear(self) -> None:
        self._alloc(_MIN_SLOTS)

    def reserve(self, entries: int) -> None:
        """Size the table for `entries` at once (a preload), instead of growing step by step."""
        if 2 * entries > len(self._keys):
            old = (self._keys, self._vals, self._times)
            self._alloc(_slots(entries))
            self._reinsert(*old)

    def get(self, key: int, value: int, now: float, max_age: float) -> bool:
        """Whether `value` is what was written for `key`, less than `max_age` seconds before `now`."""
        key = key or 1
        keys, mask = self._keys, self._mask
        i = key & mask
        while True:
            k = keys[i]
            if k == key:
                return self._vals[i] == value and now - (self._times[i] + _EPOCH) < max_age
            if k == 0:
                return False
            i = (i + 1) & mask

    def put(self, key: int, value: int, when: float) -> None:
        """Remember that `value` was written for `key` at `when` (seconds since the Unix epoch)."""
        key = key or 1
        if 2 * (self.size + 1) > len(self._keys):
            if self.size + 1 > self.max_entries:
                self.clear()  # bounded memory; the cost is one extra write per device
            else:
                self._grow()
        keys, mask = self._keys, self._mask
        i = key & mask
        while True:
            k = keys[i]
            if k == key or k == 0:
                if k == 0:
                    keys[i] = key
                    self.size += 1
                self._vals[i] = value
                self._times[i] = max(0, min(int(when) - _EPOCH, 2**31 - 1))
                return
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = (self._keys, self._vals, self._times)
        self._alloc(len(self._keys) * 2)
        self._reinsert(*old)

    def _reinsert(self, keys: array, vals: array, times: array) -> None:
        for k, v, t in zip(keys, vals, times):
            if k:
                self.put(k, v, t + _EPOCH)


class SharedSeenTable(SeenTable):
    """A SeenTable of fixed size in anonymous shared memory, seen by every process forked after it
    is made: what one worker wrote, the others know, and a restarted worker starts with it.

    Processes do not lock. Slots are 8-byte aligned words (a write is never torn); an entry whose
    key, value and time were written by two processes at once reads as "not written" (costing one
    needless write) or, with a hash collision of its value, as written by the other process."""

    def __init__(self, max_entries: int = DEFAULT_ENTRIES):
        self.max_entries = max_entries
        slots = _slots(max_entries)
        self._mm = mmap.mmap(-1, 8 + 20 * slots)  # MAP_SHARED | MAP_ANONYMOUS: kept across fork
        view = memoryview(self._mm)
        self._count = view[:8].cast("q")
        self._keys = view[8:8 + 8 * slots].cast("q")
        self._vals = view[8 + 8 * slots:8 + 16 * slots].cast("q")
        self._times = view[8 + 16 * slots:].cast("i")
        self._mask = slots - 1

    @property
    def size(self) -> int:
        return self._count[0]

    @size.setter
    def size(self, value: int) -> None:
        self._count[0] = value

    def clear(self) -> None:
        zero = bytes(1 << 20)
        for off in range(0, len(self._mm), len(zero)):
            end = min(off + len(zero), len(self._mm))
            self._mm[off:end] = zero[:end - off]

    def reserve(self, entries: int) -> None:
        """Sized for `max_entries` from the start."""

    def _grow(self) -> None:
        self.clear()  # only reached when full: bounded, like a private table


_shared: SharedSeenTable | None = None


def share(max_entries: int = DEFAULT_ENTRIES) -> None:
    """Make the table that processes forked from now on use (call before forking workers)."""
    global _shared
    _shared = SharedSeenTable(max_entries)


def table(max_entries: int = DEFAULT_ENTRIES) -> SeenTable:
    """The shared table if this process was forked after `share`, else a private one."""
    return _shared if _shared is not None else SeenTable(max_entries)
