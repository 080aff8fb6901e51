"""Progress display for the command line: a bar on a terminal, plain lines otherwise (logs, CI)."""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager


class Progress:
    """Progress of a job of known size: `update(n)` adds n units; `close()` ends the line."""

    def __init__(self, total: int, label: str, *, unit: str = "B", stream=None, width: int = 30):
        self.total = max(total, 1)
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self.done = 0
        self.t0 = time.monotonic()
        self._last_step = -1  # plain mode prints at each 25 % step
        self._last_draw = 0.0

    def _amount(self, n: int) -> str:
        if self.unit == "B":
            for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
                if n >= size:
                    return f"{n / size:.1f} {unit}"
            return f"{n} B"
        return f"{n:,} {self.unit}"

    def update(self, n: int) -> None:
        self.done = min(self.done + n, self.total)
        frac = self.done / self.total
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw < 0.1 and self.done < self.total:
                return
            self._last_draw = now
            filled = int(frac * self.width)
            rate = self.done / max(now - self.t0, 1e-9)
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {frac:>4.0%} "
                              f"{self._amount(self.done)}/{self._amount(self.total)} {self._amount(int(rate))}/s ")
            self.stream.flush()
        else:
            step = int(frac * 4)
            if step > self._last_step:
                self._last_step = step
                self.stream.write(f"{self.label}: {frac:.0%} ({self._amount(self.done)} of "
                                  f"{self._amount(self.total)})\n")
                self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write(f"\r{self.label}: {self._amount(self.done)} in {time.monotonic() - self.t0:.1f}s"
                              + " " * 30 + "\n")
            self.stream.flush()


@contextmanager
def working(label: str, stream=None):
    """For a long operation of unknown length (one server-side request): a ticking timer on a
    terminal, a line before and after otherwise."""
    stream = stream if stream is not None else sys.stderr
    tty = bool(getattr(stream, "isatty", lambda: False)())
    t0 = time.monotonic()
    stop = threading.Event()
    if tty:
        def tick() -> None:
            frames = "|/-\\"
            i = 0
            while not stop.wait(0.2):
                stream.write(f"\r{label} {frames[i % 4]} {time.monotonic() - t0:.1f}s ")
                stream.flush()
                i += 1
        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
    else:
        stream.write(f"{label}...\n")
        stream.flush()
    try:
        yield
    finally:
        stop.set()
        if tty:
            thread.join()
            stream.write(f"\r{label}: done in {time.monotonic() - t0:.1f}s" + " " * 20 + "\n")
        else:
            stream.write(f"{label}: done in {time.monotonic() - t0:.1f}s\n")
        stream.flush()
