"""The minimum-rate rule for transfers (artifact downloads, upload bodies): a transfer is cut only
when its average rate over the last `window` seconds falls below `min_rate` bytes per second.

Not an idle timeout: a cellular device (NB-IoT, LTE-M) that takes a few kB/s and stalls for tens
of seconds keeps its download as long as it averages the minimum over the window; a client that
stops for longer than that (or trickles below it) is cut, and its connection closed, so it holds
no worker for ever. A transfer gets a whole window before it is judged.

What counts for a download is what the client took: the bytes handed to the connection, less
those still waiting in its write buffer and in the kernel's send queue (not yet acknowledged by
the client, `SIOCOUTQ`); a client that stops reading is not credited with what the kernel could
still buffer for it. For an upload, the body bytes received.
"""
from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import logging
import socket
import struct
import termios
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from gateway.metrics import METRICS

log = logging.getLogger("ota_gateway")


class TooSlow(ConnectionResetError):
    """The transfer fell below the minimum rate and its connection was closed."""


@dataclass(frozen=True)
class RateRule:
    min_rate: float      # bytes per second; 0 turns the rule off
    window: float        # seconds

    @property
    def tick(self) -> float:
        """How often progress is sampled: a tenth of the window, at most a second."""
        return min(1.0, self.window / 10)


class Progress:
    """Samples of (time, bytes) over the last window; whether the rule is broken."""

    def __init__(self, rule: RateRule, now: float):
        self.rule = rule
        self.samples: deque[tuple[float, int]] = deque([(now, 0)])

    def too_slow(self, now: float, done: int) -> bool:
        self.samples.append((now, done))
        window = self.rule.window
        while len(self.samples) > 1 and self.samples[1][0] <= now - window:
            self.samples.popleft()
        t0, d0 = self.samples[0]
        span = now - t0
        return span >= window and done - d0 < self.rule.min_rate * span


def unsent(transport: asyncio.Transport) -> int:
    """Bytes written to `transport` the client has not acknowledged: its write buffer and the
    kernel's send queue (0 for the queue where the platform cannot tell)."""
    pending = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is None:
        return pending
    buf = array.array("i", [0])
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf, True)  # SIOCOUTQ on a TCP socket
    return pending + buf[0]


async def drained(transport: asyncio.Transport, *, longest: float = 0.1) -> None:
    """Wait until the client has acknowledged every byte written to `transport` (or the connection
    closed): a download is in flight, and under the rule, until the client has it, not only until
    the kernel could buffer the rest. Polled from 1 ms up to `longest` apart; ends when the rule
    (`guarded`) cuts the connection, if not before."""
    delay = 0.001
    while not transport.is_closing() and unsent(transport) > 0:
        await asyncio.sleep(delay)
        delay = min(delay * 2, longest)


async def _watch(task: asyncio.Task, transport: asyncio.Transport, done: Callable[[], int], rule: RateRule,
                 cut: list[float]) -> None:
    """Sample `done()` every tick; when the rule is broken, close the connection and cancel `task`.
    Ends when cancelled (the transfer ended) or after a cut."""
    loop = asyncio.get_running_loop()
    progress = Progress(rule, loop.time())
    while not task.done():
        await asyncio.sleep(rule.tick)
        now = loop.time()
        if progress.too_slow(now, done()):
            span = now - progress.samples[0][0]
            cut.append((done() - progress.samples[0][1]) / span)
            cut_off(transport)
            task.cancel()
            return


def cut_off(transport: asyncio.Transport) -> None:
    """Close the connection with a reset, dropping what the kernel still queues for the client
    (a plain close would go on sending it, at the client's pace)."""
    sock = transport.get_extra_info("socket")
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@contextlib.asynccontextmanager
async def guarded(transport: asyncio.Transport | None, done: Callable[[], int], rule: RateRule,
                  direction: str) -> AsyncIterator[None]:
    """Run the body (a transfer of the current task) under `rule`: when the client falls below the
    minimum rate, its connection is closed and the body ends with `TooSlow`. `done()` tells the
    bytes transferred so far."""
    if rule.min_rate <= 0 or transport is None:
        yield
        return
    task = asyncio.current_task()
    cut: list[float] = []
    watcher = asyncio.create_task(_watch(task, transport, done, rule, cut))
    started = time.monotonic()
    try:
        yield
    except asyncio.CancelledError:
        if cut and task.uncancel() == 0:
            METRICS.inc("ota_gateway_slow_transfers_cut", (direction,))
            log.info("%s cut after %.0f s: %.0f B/s over the last %.0f s, below the minimum %.0f B/s",
                     direction, time.monotonic() - started, cut[0], rule.window, rule.min_rate)
            raise TooSlow(f"{direction} below {rule.min_rate:g} B/s over {rule.window:g} s") from None
        raise
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
