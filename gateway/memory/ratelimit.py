"""Per-device poll rate limiting, in memory, per process.

A fixed one-minute window: memory holds only the devices that polled this minute and is
dropped when the minute turns. With N worker processes a device can reach N x the limit; that
is the price of keeping the poll path free of shared state."""
from __future__ import annotations


class PollLimiter:
    def __init__(self, window: float = 60.0):
        self.window = window
        self._current = -1
        self._counts: dict = {}

    def allow(self, key, limit: int, now: float) -> bool:
        w = int(now // self.window)
        if w != self._current:
            self._current, self._counts = w, {}
        n = self._counts.get(key, 0) + 1
        self._counts[key] = n
        return n <= limit
