"""Failure throttles for password logins: a token bucket per key, in memory, per process.

Each key (an account, a source address) may fail `burst` times in a row, then once more every
`window / burst` seconds: a bucket of `burst` tokens that refills at that rate, one token taken
per attempt (given back when the attempt succeeds, so successes never count). A key whose bucket
is full again holds no memory; the table keeps at most `max_keys` keys, dropping the least
recently used first (so random emails or many source addresses cannot grow it). With N worker
processes a key can reach N x the limit; the hashing pool caps what that can cost."""
from __future__ import annotations

import math
from collections import OrderedDict


class FailureThrottle:
    def __init__(self, burst: int, window: float, max_keys: int):
        if burst < 1 or window <= 0 or max_keys < 1:
            raise ValueError("burst and max_keys must be at least 1, window positive")
        self.burst = burst
        self.rate = burst / window  # tokens per second
        self.max_keys = max_keys
        self._keys: OrderedDict[object, tuple[float, float]] = OrderedDict()  # key -> (tokens, as of)

    def __len__(self) -> int:
        return len(self._keys)

    def _level(self, key, now: float) -> float:
        entry = self._keys.get(key)
        if entry is None:
            return float(self.burst)
        tokens, stamp = entry
        return min(float(self.burst), tokens + max(0.0, now - stamp) * self.rate)

    def take(self, key, now: float) -> int:
        """Take a token for an attempt: 0 when taken, else the whole seconds until one is back
        (nothing taken)."""
        level = self._level(key, now)
        if level < 1.0:
            self._keys.move_to_end(key)
            return max(1, math.ceil((1.0 - level) / self.rate))
        self._store(key, level - 1.0, now)
        return 0

    def give_back(self, key, now: float) -> None:
        """Return the token of an attempt that did not fail (it succeeded, or never ran)."""
        if key not in self._keys:
            return  # evicted meanwhile: a missing key is a full bucket already
        level = self._level(key, now) + 1.0
        if level >= self.burst:
            del self._keys[key]
        else:
            self._keys[key] = (level, now)

    def _store(self, key, tokens: float, now: float) -> None:
        keys = self._keys
        if key in keys:
            keys[key] = (tokens, now)
            keys.move_to_end(key)
            return
        # the least recently used keys come first: drop those whose buckets are full again,
        # then (a table still full of live keys) the oldest live one
        while keys:
            oldest = next(iter(keys))
            if len(keys) < self.max_keys and self._level(oldest, now) < self.burst:
                break
            del keys[oldest]
        keys[key] = (tokens, now)

    def clear(self) -> None:
        self._keys.clear()
