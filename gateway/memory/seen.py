"""What the database already holds for each device check-in, kept compactly.

A poll that reports what was last written (same hardware and version, written less than the
last-seen granularity ago) needs no write. Remembering that for a million-device fleet in a dict
of tuples would cost ~250 bytes a device; this open-addressing table keeps three machine words
per slot (key hash, value hash, seconds), ~48 bytes a device at its load factor. A slot's three
words sit next to each other: a lookup in a table far larger than the CPU caches costs one cache
miss, not one per word.
"""
from __future__ import annotations

import mmap
from array import array

DEFAULT_ENTRIES = 2_000_000
_EPOCH = 1_600_000_000  # seconds are stored from here
_MIN_SLOTS = 1 << 14
_W = 3  # words per slot: key hash (0: empty), value hash, seconds since _EPOCH
# `admit`'s answers
SKIP = 0       # the value is what the database holds, written recently: no write needed
WRITE = 1      # write it
CONTESTED = 2  # write it, and another process holds a different value of the same key unwritten


def _slots(entries: int) -> int:
    n = _MIN_SLOTS
    while n < 2 * entries:  # load factor at most 1/2 keeps linear probes short
        n <<= 1
    return n


class SeenTable:
    """Map of 64-bit key hashes to (64-bit value hash, time written), bounded by `max_entries`."""

    def __init__(self, max_entries: int = DEFAULT_ENTRIES, expected: int = 0):
        self.max_entries = max_entries
        self._alloc(_slots(min(expected, max_entries)))

    def _alloc(self, slots: int) -> None:
        self._words = array("q", bytes(8 * _W * slots))
        self._mask = slots - 1
        self.size = 0

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        return self._words.itemsize * len(self._words)

    @property
    def slots(self) -> int:
        return self._mask + 1

    def clear(self) -> None:
        self._alloc(_MIN_SLOTS)

    def reserve(self, entries: int) -> None:
        """Size the table for `entries` at once (a preload), instead of growing step by step."""
        if 2 * entries > self.slots:
            old = self._words
            self._alloc(_slots(entries))
            self._reinsert(old)

    def _find(self, key: int) -> int:
        """The index of the slot holding `key` (non-zero), or of the empty slot ending its probe."""
        words, mask = self._words, self._mask
        j = key & mask
        while True:
            i = j * _W
            k = words[i]
            if k == key or k == 0:
                return i
            j = (j + 1) & mask

    def get(self, key: int, value: int, now: float, max_age: float) -> bool:
        """Whether `value` is what was written for `key`, less than `max_age` seconds before `now`."""
        key = key or 1
        i = self._find(key)
        words = self._words
        return words[i] == key and words[i + 1] == value and now - (words[i + 2] + _EPOCH) < max_age

    def admit(self, key: int, value: int, now: float, max_age: float) -> int:
        """SKIP when `value` is what was written for `key` less than `max_age` seconds ago; else
        mark `value` pending for `key` (seconds 0: written by nobody yet) and answer WRITE, or
        CONTESTED when another value was pending there (another process buffers a different
        report of the same key, so the order of the two writes decides nothing by itself)."""
        key = key or 1
        i = self._find(key)
        words = self._words
        if words[i] != key:
            self.put(key, value, _EPOCH)
            return WRITE
        when = words[i + 2]
        if words[i + 1] == value and when and now - (when + _EPOCH) < max_age:
            return SKIP
        contested = words[i + 1] != value and not when
        words[i + 1] = value
        words[i + 2] = 0
        return CONTESTED if contested else WRITE

    def settle(self, key: int, value: int, when: float) -> None:
        """Remember that `value` was written for `key` at `when`, unless another value is pending
        there (a newer report of another process, still to be written: its mark stays)."""
        key = key or 1
        i = self._find(key)
        words = self._words
        if words[i] == key and words[i + 2] == 0 and words[i + 1] != value:
            return
        self.put(key, value, when)

    def put(self, key: int, value: int, when: float) -> None:
        """Remember that `value` was written for `key` at `when` (seconds since the Unix epoch)."""
        key = key or 1
        if 2 * (self.size + 1) > self.slots:
            if self.size + 1 > self.max_entries:
                self.clear()  # bounded memory; the cost is one extra write per device
            else:
                self._grow()
        i = self._find(key)
        words = self._words
        # value and time before the key: another process reading the slot meanwhile sees either
        # no entry or a whole one (or, racing on the same key, a mixed one)
        words[i + 1] = value
        words[i + 2] = max(0, int(when) - _EPOCH)
        if words[i] == 0:
            words[i] = key
            self.size += 1

    def _grow(self) -> None:
        old = self._words
        self._alloc(self.slots * 2)
        self._reinsert(old)

    def _reinsert(self, words) -> None:
        for i in range(0, len(words), _W):
            if words[i]:
                self.put(words[i], words[i + 1], words[i + 2] + _EPOCH)


class SharedSeenTable(SeenTable):
    """A SeenTable of fixed size in anonymous shared memory, seen by every process forked after it
    is made: what one worker wrote, the others know, and a restarted worker starts with it.

    Processes do not lock. Every word is 8-byte aligned (a write is never torn) and an entry's
    key is written last, so a reader sees no entry or a whole one; two processes writing the same
    key at once can leave one's value with the other's time, which at worst costs a needless write
    or skips a last_seen refresh until the next one."""

    def __init__(self, max_entries: int = DEFAULT_ENTRIES):
        self.max_entries = max_entries
        slots = _slots(max_entries)
        self._mm = mmap.mmap(-1, 8 + 8 * _W * slots)  # MAP_SHARED | MAP_ANONYMOUS: kept across fork
        view = memoryview(self._mm)
        self._count = view[:8].cast("q")
        self._words = view[8:].cast("q")
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
