"""Password logins that cannot stall the gateway, be guessed at speed, or tell which emails exist.

Every email-and-secret login (HTTP Basic `email:secret` on the API, the dashboard's login form)
goes through `GUARD`, one per process (with N worker processes each has its own pool and
throttles, so the limits below apply per process):

- Throttles, checked before anything is hashed: per account (the email, lower-cased) and per
  source address (an IPv6 address counts by its /64), a token bucket of failures
  (`memory/throttle.py`): an account may fail ACCOUNT_BURST times, then once a minute; a source
  SOURCE_BURST times, then once every 6 seconds. An attempt takes a token from both and gives them
  back unless it failed, so successes never count and concurrent guesses cannot overtake the
  limit. A refused attempt is `LoginThrottled` (429 + Retry-After) and runs no scrypt at all.
  Unknown and known emails are throttled alike. The tables hold at most MAX_KEYS keys each.
  Behind a reverse proxy every request comes from the proxy's address, so the per-source limit
  becomes one limit for everybody.
- Hashing (scrypt, deliberately slow and memory-hard) runs off the event loop, in a pool of
  HASH_WORKERS threads (hashlib.scrypt releases the GIL) with at most HASH_QUEUE attempts
  waiting; past that a login is `LoginBusy` (503 + Retry-After) instead of queueing without
  limit.
- An unknown email is checked against a dummy hash of the same parameters, so it costs the
  same single scrypt as a known email with a wrong secret.
"""
from __future__ import annotations

import asyncio
import ipaddress
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from gateway.crypto import tokens
from gateway.domain.errors import ApiError, Overloaded, TooManyRequests
from gateway.memory.throttle import FailureThrottle

# two threads at most, and never more than half the cores: the event loop keeps the rest
HASH_WORKERS = max(1, min(2, (os.cpu_count() or 2) // 2))
HASH_QUEUE = 8  # ~50 ms a hash: a login waits a few hundred ms at worst, then gets 503
ACCOUNT_BURST, ACCOUNT_WINDOW = 10, 600.0  # 10 failures, then one a minute
SOURCE_BURST, SOURCE_WINDOW = 50, 300.0  # 50 failures, then one every 6 s
MAX_KEYS = 10_000  # per table, a few MB at most
BUSY_RETRY_AFTER = 1


class LoginRefused(ApiError):
    """A login that was not checked at all; retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class LoginThrottled(LoginRefused, TooManyRequests):
    """Too many failed logins for this account or from this source (HTTP: 429)."""
    type = "rate_limited"


class LoginBusy(LoginRefused, Overloaded):
    """The hashing pool and its queue are full (HTTP: 503)."""
    type = "overloaded"


def account_key(email: str) -> str:
    return email.strip().lower()[:320]


def source_key(address: str | None) -> str:
    """The throttling key of a peer address: an IPv4 address, or an IPv6 /64 (one host usually
    holds a whole /64, so counting single IPv6 addresses would not limit anybody)."""
    if not address:
        return "-"
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:64]
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class HashPool:
    """At most `workers` hashes at once and `queue` more waiting (counted until they finish,
    including those whose caller went away); a call past that raises LoginBusy at once."""

    def __init__(self, workers: int, queue: int):
        self.workers = workers
        self.capacity = workers + queue
        self.admitted = 0
        self._lock = threading.Lock()  # released from worker threads
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None or self._pid != os.getpid():  # made after a fork, never before
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="ota-login-hash")
            self._pid = os.getpid()
        return self._executor

    def _release(self, _fut: Future | None = None) -> None:
        with self._lock:
            self.admitted -= 1

    async def run(self, fn, *args):
        with self._lock:
            if self.admitted >= self.capacity:
                raise LoginBusy("too many logins are being checked; retry in a moment", BUSY_RETRY_AFTER)
            self.admitted += 1
        try:
            fut = self._pool().submit(fn, *args)
        except BaseException:
            self._release()
            raise
        fut.add_done_callback(self._release)
        return await asyncio.wrap_future(fut)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


class Attempt:
    """One login attempt holding a token of its account and source: `with guard.attempt(...) as
    a:`; set `a.failed = True` when the secret was wrong, else the tokens are given back."""

    def __init__(self, guard: "LoginGuard", account: str, source: str):
        self.guard, self.account, self.source = guard, account, source
        self.failed = False

    def __enter__(self) -> "Attempt":
        return self

    def __exit__(self, *exc) -> None:
        if not self.failed:
            now = self.guard.clock()
            self.guard.accounts.give_back(self.account, now)
            self.guard.sources.give_back(self.source, now)


class LoginGuard:
    def __init__(self, *, hash_workers: int = HASH_WORKERS, hash_queue: int = HASH_QUEUE,
                 account_burst: int = ACCOUNT_BURST, account_window: float = ACCOUNT_WINDOW,
                 source_burst: int = SOURCE_BURST, source_window: float = SOURCE_WINDOW,
                 max_keys: int = MAX_KEYS, clock=time.monotonic):
        self.accounts = FailureThrottle(account_burst, account_window, max_keys)
        self.sources = FailureThrottle(source_burst, source_window, max_keys)
        self.pool = HashPool(hash_workers, hash_queue)
        self.clock = clock
        # no secret hashes to this (a random digest): an unknown email costs one scrypt too
        self.dummy_hash = tokens.unmatchable_user_secret_hash()

    def attempt(self, email: str, source: str | None) -> Attempt:
        """Take a token of the account and of the source, or raise LoginThrottled."""
        now = self.clock()
        account, src = account_key(email), source_key(source)
        wait = self.sources.take(src, now)
        if not wait:
            wait = self.accounts.take(account, now)
            if wait:
                self.sources.give_back(src, now)
        if wait:
            raise LoginThrottled(f"too many failed logins for this email or address; retry in {wait} s", wait)
        return Attempt(self, account, src)

    async def verify(self, secret: str, stored: str | None) -> bool:
        """Whether `secret` matches `stored` (None: an unknown account, checked against the dummy
        hash and always False), hashed in the pool; LoginBusy when it is full."""
        ok = await self.pool.run(tokens.verify_user_secret, secret, stored or self.dummy_hash)
        return ok and stored is not None

    def close(self) -> None:
        self.pool.close()


GUARD = LoginGuard()
