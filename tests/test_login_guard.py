"""Password logins (HTTP Basic email:secret and the dashboard's form): scrypt off the event loop in a
bounded pool (503 when full), per-account and per-source failure throttles (429, no scrypt), the
same work for unknown and known emails, bounded memory. Counters only: scrypt is spied on."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import threading
import uuid

import pytest
from conftest import ORG, P, auth_headers

from gateway.appkeys import POOL
from gateway.crypto import tokens
from gateway.http.errors import Inflight
from gateway.memory.throttle import FailureThrottle
from gateway.services import login_guard
from gateway.services.auth import authenticate
from gateway.services.login_guard import LoginGuard, LoginThrottled, source_key

SECRET = "correct-horse-battery"
CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')


class ScryptSpy:
    """Stands in for hashlib.scrypt: counts calls, notes their threads, and (with `gate`) holds
    every call made off the event loop's thread until the gate opens."""

    def __init__(self, real):
        self.real, self.loop_thread = real, threading.get_ident()
        self.lock = threading.Lock()
        self.calls, self.threads, self.held = 0, [], 0
        self.gate: threading.Event | None = None

    def __call__(self, *args, **kwargs):
        me = threading.get_ident()
        with self.lock:
            self.calls += 1
            self.threads.append(me)
        if self.gate is not None and me != self.loop_thread:
            with self.lock:
                self.held += 1
            assert self.gate.wait(60), "the test never opened the gate"  # a safety bound, not a timing
        return self.real(*args, **kwargs)

    def reset(self) -> None:
        with self.lock:
            self.calls, self.threads = 0, []


@pytest.fixture
def guard(monkeypatch):
    """A fresh guard with the default limits for each test (throttles are per process)."""
    g = LoginGuard()
    monkeypatch.setattr(login_guard, "GUARD", g)
    yield g
    g.close()


@pytest.fixture
def small_guard(monkeypatch):
    def make(**kw):
        g = LoginGuard(**kw)
        monkeypatch.setattr(login_guard, "GUARD", g)
        made.append(g)
        return g

    made: list[LoginGuard] = []
    yield make
    for g in made:
        g.close()


@pytest.fixture
def spy(monkeypatch):
    s = ScryptSpy(hashlib.scrypt)
    monkeypatch.setattr(hashlib, "scrypt", s)
    return s


async def make_user(client, role: str = "viewer") -> str:
    email = f"u-{uuid.uuid4().hex[:10]}@acme.test"
    r = await client.post(f"/api/v0/organizations/{ORG}/users", json={"email": email, "role": role, "secret": SECRET},
                          headers=auth_headers())
    assert r.status == 201, await r.text()
    return email


def basic(email: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{secret}".encode()).decode()}


async def form_login(client, email: str, secret: str):
    r = await client.get("/ui/login")
    assert r.status == 200
    csrf = CSRF_RE.search(await r.text()).group(1)
    return await client.post("/ui/login", data={"_csrf": csrf, "email": email, "secret": secret},
                             allow_redirects=False)


def retry_after(r) -> int:
    value = int(r.headers["Retry-After"])
    assert value >= 1
    return value


async def until(condition) -> None:
    """Wait for a condition other tasks and threads bring about (bounded, not a timing)."""
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def test_scrypt_runs_off_the_event_loop(client, guard, spy):
    email = await make_user(client)
    spy.reset()
    assert (await client.get(P, headers=basic(email, SECRET))).status == 200
    assert (await client.get(P, headers=basic(email, "wrong-secret-x"))).status == 401
    assert (await form_login(client, email, "wrong-secret-y")).status == 401
    assert spy.calls == 3
    assert spy.loop_thread not in spy.threads


async def test_unknown_email_and_wrong_secret_take_one_scrypt_each(client, guard, spy):
    email = await make_user(client)
    spy.reset()
    wrong = await client.get(P, headers=basic(email, "not-the-secret"))
    assert wrong.status == 401 and spy.calls == 1
    spy.reset()
    unknown = await client.get(P, headers=basic(f"nobody-{uuid.uuid4().hex[:6]}@other.test", "not-the-secret"))
    assert unknown.status == 401 and spy.calls == 1
    assert await wrong.json() == await unknown.json()
    # the dashboard's form alike
    spy.reset()
    assert (await form_login(client, "nobody@nowhere.test", "not-the-secret")).status == 401
    assert spy.calls == 1


@pytest.mark.parametrize("known", [True, False])
async def test_account_throttled_after_n_failures_without_scrypt(client, guard, spy, known):
    email = await make_user(client) if known else f"ghost-{uuid.uuid4().hex[:6]}@acme.test"
    other = await make_user(client)
    n = guard.accounts.burst
    spy.reset()
    for _ in range(n):
        assert (await client.get(P, headers=basic(email, "wrong-secret-1"))).status == 401
    assert spy.calls == n
    spy.reset()
    r = await client.get(P, headers=basic(email, "wrong-secret-1"))
    assert r.status == 429
    assert retry_after(r) <= 60  # one failure a minute comes back
    assert (await r.json())["error"]["type"] == "rate_limited"
    # even the right secret (or another spelling of the email) waits: it is not even hashed
    assert (await client.get(P, headers=basic(email.upper(), SECRET))).status == 429
    r = await form_login(client, email, SECRET)
    assert r.status == 429 and "text/html" in r.headers["Content-Type"] and retry_after(r)
    assert spy.calls == 0
    # another account from the same source is untouched
    assert (await client.get(P, headers=basic(other, SECRET))).status == 200
    assert spy.calls == 1


async def test_source_throttled_after_n_failures_other_sources_unaffected(client, small_guard, spy):
    guard = small_guard(source_burst=3)
    email = await make_user(client)
    pool = client.server.app[POOL]
    spy.reset()
    for i in range(3):  # three different accounts from one address
        assert (await client.get(P, headers=basic(f"spray{i}@acme.test", "guess-guess"))).status == 401
    r = await client.get(P, headers=basic(email, SECRET))
    assert r.status == 429 and retry_after(r) and spy.calls == 3
    r = await form_login(client, email, SECRET)
    assert r.status == 429 and "text/html" in r.headers["Content-Type"] and spy.calls == 3
    # another source logs in to the same account; the throttled one still may not
    ident = await authenticate(pool, email, SECRET, source="192.0.2.7")
    assert ident.actor == f"user:{email}"
    with pytest.raises(LoginThrottled):
        await authenticate(pool, email, SECRET, source="127.0.0.1")
    assert len(guard.sources) == 1  # the successful source holds no state


async def test_successes_do_not_count(client, guard, spy):
    email = await make_user(client)
    n = guard.accounts.burst
    for _ in range(2 * n):
        assert (await client.get(P, headers=basic(email, SECRET))).status == 200
    for _ in range(n):
        assert (await client.get(P, headers=basic(email, "wrong-secret-2"))).status == 401
    assert (await client.get(P, headers=basic(email, "wrong-secret-2"))).status == 429
    assert len(guard.accounts) == 1


async def test_saturated_pool_answers_503_with_retry_after(client, small_guard, spy):
    guard = small_guard(hash_workers=1, hash_queue=2)
    email = await make_user(client)
    other = await make_user(client)
    spy.reset()
    spy.gate = threading.Event()
    # one hash running (held by the gate) and two queued: the pool and its queue are full
    tasks = [asyncio.ensure_future(client.get(P, headers=basic(email, s)))
             for s in (SECRET, "wrong-secret-3", "wrong-secret-4")]
    try:
        await until(lambda: guard.pool.admitted == 3 and spy.held == 1)
        calls = spy.calls
        r = await client.get(P, headers=basic(other, SECRET))
        assert r.status == 503 and retry_after(r)
        assert (await r.json())["error"]["type"] == "overloaded"
        r = await form_login(client, other, SECRET)
        assert r.status == 503 and "text/html" in r.headers["Content-Type"] and retry_after(r)
        assert spy.calls == calls == 1  # refused without hashing
    finally:
        spy.gate.set()
        answers = await asyncio.gather(*tasks)
    assert sorted(a.status for a in answers) == [200, 401, 401]
    assert guard.pool.admitted == 0
    # the refused logins were not counted as failures, and the pool takes logins again
    r = await form_login(client, other, SECRET)
    assert r.status == 303
    assert len(guard.accounts) == 1  # only `email`, with its two failures


async def test_parallel_requests_with_the_same_credentials_share_one_check(client, small_guard, spy):
    """A script's parallel requests (Basic email:secret) neither queue up scrypts nor fill the
    pool: the same email and secret arriving together are checked once."""
    guard = small_guard(hash_workers=1, hash_queue=0)
    email = await make_user(client)
    spy.reset()
    spy.gate = threading.Event()
    tasks = [asyncio.ensure_future(client.get(P, headers=basic(email, SECRET))) for _ in range(6)]
    try:
        # all six in their handlers (each runs to its first wait at once) while the scrypt is held
        await until(lambda: spy.held == 1 and Inflight.count == 6)
    finally:
        spy.gate.set()
        answers = await asyncio.gather(*tasks)
    assert [a.status for a in answers] == [200] * 6
    assert spy.calls == 1 and guard.pool.admitted == 0


async def test_pool_slot_held_until_the_hash_ends_even_if_the_caller_leaves(guard):
    """A caller that goes away (cancelled) does not free its slot before its hash ends."""
    gate, started = threading.Event(), threading.Event()

    def slow(x):
        started.set()
        assert gate.wait(60)
        return x

    pool = login_guard.HashPool(1, 0)
    try:
        task = asyncio.ensure_future(pool.run(slow, 7))
        await until(started.is_set)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.admitted == 1
        with pytest.raises(login_guard.LoginBusy):
            await pool.run(slow, 8)
        gate.set()
        await until(lambda: pool.admitted == 0)
        assert await pool.run(lambda x: x, 9) == 9
    finally:
        gate.set()
        pool.close()


def test_throttle_refills_one_failure_per_interval():
    clock = [1000.0]
    t = FailureThrottle(burst=3, window=60.0, max_keys=10)
    assert [t.take("a", clock[0]) for _ in range(3)] == [0, 0, 0]
    wait = t.take("a", clock[0])
    assert wait == 20
    clock[0] += wait
    assert t.take("a", clock[0]) == 0
    assert t.take("a", clock[0]) == 20
    t.give_back("a", clock[0])  # a success gives its token back
    assert t.take("a", clock[0]) == 0
    clock[0] += 60
    t.give_back("a", clock[0])
    assert len(t) == 0  # a full bucket is no state


def test_throttle_and_guard_memory_is_bounded():
    t = FailureThrottle(burst=5, window=600.0, max_keys=100)
    for i in range(10_000):
        t.take(f"random-{i}@example.com", 1.0 + i / 1000)
    assert len(t) == 100
    g = LoginGuard(max_keys=50)
    try:
        for i in range(5000):  # spoofed-looking sources and random emails, every attempt failing
            with g.attempt(f"r{i}@x.test", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}") as a:
                a.failed = True
        assert len(g.accounts) <= 50 and len(g.sources) <= 50
    finally:
        g.close()


def test_source_key_groups_ipv6_by_64():
    assert source_key("2001:db8:1:2::1") == source_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("::ffff:192.0.2.1") == source_key("192.0.2.1") == "192.0.2.1"
    assert source_key(None) == "-"


async def test_dummy_hash_matches_nothing_and_costs_a_real_scrypt(guard, spy):
    """An unknown account is checked against a hash of the real format (same salt and digest
    sizes, same scrypt parameters) that no secret matches, and is never let in."""
    real = tokens.hash_user_secret("whatever-secret")
    assert [len(p) for p in guard.dummy_hash.split("$")] == [len(p) for p in real.split("$")]
    spy.reset()
    assert not await guard.verify("", None)
    assert not tokens.verify_user_secret("whatever-secret", guard.dummy_hash)
    assert spy.calls == 2
