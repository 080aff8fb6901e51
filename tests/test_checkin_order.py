"""Reports of one device that reach two workers within a flush interval, flushed in either order:
the current version is the newest report's, and the history reads in the order the reports were
received (issue 18, correctness). Each case failed before: the last flush won, and a report that
matched what one worker had last written was skipped although another worker held a newer one."""
from __future__ import annotations

import time

import pytest

from gateway.memory.checkins import CheckinBuffer
from gateway.memory.seen import CONTESTED, SKIP, WRITE, SeenTable
from gateway.store import checkins as checkins_store
from gateway.store import insight as insight_store

GRANULARITY = 300.0
T0 = time.time() - 3600


@pytest.fixture
async def db(project_pool):
    return project_pool


async def flush(pool, rows):
    async with pool.acquire() as conn:
        await checkins_store.flush_checkins(conn, rows, last_seen_granularity=GRANULARITY)


async def outcome(pool, pid, serial):
    """(current version, [(version, previous)] oldest first, as the history API reads them)."""
    cur = await pool.fetchval("SELECT s.version FROM device_software s JOIN devices d ON d.id = s.device_id "
                              "WHERE d.project_id = $1 AND d.serial = $2 AND s.software_type = 'main'", pid, serial)
    async with pool.acquire() as conn:
        hist = await insight_store.device_history(conn, pid, serial, 100)
    return cur, [(h["version"], h["previous_version"]) for h in reversed(hist)]


# (case, stored version at T0, reports as (version, seconds after T0, contested) in the order
#  their flushes land, expected current version, expected history oldest first)
CASES = [
    ("newer report flushed first", "1.0", [("2.0", 20, True), ("1.5", 10, False)],
     "2.0", [("1.0", None), ("1.5", "1.0"), ("2.0", "1.5")]),
    ("newer report flushed last", "1.0", [("1.5", 10, False), ("2.0", 20, True)],
     "2.0", [("1.0", None), ("1.5", "1.0"), ("2.0", "1.5")]),
    ("rollback reported to the other worker, flushed first", "1.0", [("1.0", 20, True), ("2.0", 10, False)],
     "1.0", [("1.0", None), ("2.0", "1.0"), ("1.0", "2.0")]),
    ("rollback reported to the other worker, flushed last", "1.0", [("2.0", 10, False), ("1.0", 20, True)],
     "1.0", [("1.0", None), ("2.0", "1.0"), ("1.0", "2.0")]),
    ("one new version reported to both, later one first", "1.0", [("2.0", 20, False), ("2.0", 10, False)],
     "2.0", [("1.0", None), ("2.0", "1.0")]),
    ("an old report of another version never wins", "1.0", [("3.0", 30, False), ("2.0", 10, False)],
     "3.0", [("1.0", None), ("2.0", "1.0"), ("3.0", "2.0")]),
    ("a contested report of the stored version is no change", "1.0", [("1.0", 10, True)],
     "1.0", [("1.0", None)]),
]


@pytest.mark.parametrize("case,stored,reports,current,history", CASES, ids=[c[0] for c in CASES])
async def test_flushes_in_any_order(db, case, stored, reports, current, history):
    pool, pid = db
    serial = "ORD-" + case.replace(" ", "-")[:44]
    await flush(pool, [(pid, serial, "evt", "main", (stored,), "memfault", T0, False)])
    for version, after, contested in reports:
        await flush(pool, [(pid, serial, "evt", "main", (version,), "memfault", T0 + after, contested)])
    assert await outcome(pool, pid, serial) == (current, history)


# SeenTable.admit / settle, one key: (case, steps as (call, value, age or when), answers of the admits)
NOW = 1_900_000_000.0
SEEN_CASES = [
    ("unknown key is written", [("admit", 1, 0)], [WRITE]),
    ("written recently, same value: skipped", [("put", 1, NOW - 10), ("admit", 1, 0)], [SKIP]),
    ("written long ago: written again", [("put", 1, NOW - 1000), ("admit", 1, 0)], [WRITE]),
    ("another value written: written", [("put", 1, NOW - 10), ("admit", 2, 0)], [WRITE]),
    ("pending here, same value: written, not contested", [("admit", 1, 0), ("admit", 1, 0)], [WRITE, WRITE]),
    ("pending here, another value: contested", [("admit", 1, 0), ("admit", 2, 0)], [WRITE, CONTESTED]),
    ("a pending value is never skipped, even the one written before",
     [("put", 1, NOW - 10), ("admit", 2, 0), ("admit", 1, 0)], [WRITE, CONTESTED]),
    ("settle keeps another value's pending mark", [("admit", 2, 0), ("settle", 1, NOW), ("admit", 1, 0)],
     [WRITE, CONTESTED]),
    ("settle of the pending value ends it", [("admit", 1, 0), ("settle", 1, NOW), ("admit", 1, 0)], [WRITE, SKIP]),
]


@pytest.mark.parametrize("case,steps,answers", SEEN_CASES, ids=[c[0] for c in SEEN_CASES])
def test_seen_table_pending_marks(case, steps, answers):
    t = SeenTable(1000)
    got = []
    for call, value, arg in steps:
        if call == "admit":
            got.append(t.admit(42, value, NOW, GRANULARITY))
        else:
            getattr(t, call)(42, value, arg)
    assert got == answers


async def test_two_workers_sharing_one_table(db):
    """Worker A buffers 2.0, then the device rolls back and reports 1.0 (what the database holds,
    written moments ago) to worker B, which used to skip it; A's flush then made 2.0 current."""
    pool, pid = db
    a = CheckinBuffer(pool, last_seen_granularity=GRANULARITY)
    b = CheckinBuffer(pool, last_seen_granularity=GRANULARITY)
    b._written = a._written  # the table forked workers share (memory/seen.share)
    a.add(pid, "ORD-2W", "evt", "main", "1.0", "memfault")
    await a.flush()
    a.add(pid, "ORD-2W", "evt", "main", "2.0", "memfault")
    b.add(pid, "ORD-2W", "evt", "main", "1.0", "memfault")
    assert (len(a), len(b), b.skipped) == (1, 1, 0)
    await b.flush()
    await a.flush()
    assert await outcome(pool, pid, "ORD-2W") == ("1.0", [("1.0", None), ("2.0", "1.0"), ("1.0", "2.0")])
    # settled by both: the next unchanged report of 1.0 is skipped again... by either worker
    a.add(pid, "ORD-2W", "evt", "main", "1.0", "memfault")
    assert len(a) == 1  # A wrote 2.0 last (B's write of 1.0 is older in its table): once more
    await a.flush()
    b.add(pid, "ORD-2W", "evt", "main", "1.0", "memfault")
    assert (len(b), b.skipped) == (0, 1)
