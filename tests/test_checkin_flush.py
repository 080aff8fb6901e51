"""The check-in flush statement against a real database: what each kind of check-in row leaves in
devices, device_software and the version history."""
from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from gateway.store import checkins as checkins_store

GRANULARITY = 300.0


@pytest.fixture
async def db(project_pool):
    return project_pool


async def state(pool, pid, serial):
    """(hardware, current version, last_seen epoch, [(version, previous)]) of one device."""
    dev = await pool.fetchrow("SELECT id, hardware_version, extract(epoch FROM last_seen) AS seen FROM devices "
                              "WHERE project_id = $1 AND serial = $2", pid, serial)
    if dev is None:
        return None
    cur = await pool.fetchval("SELECT version FROM device_software WHERE device_id = $1 AND software_type = 'main'",
                              dev["id"])
    hist = await pool.fetch("SELECT version, previous_version FROM device_version_history WHERE device_id = $1 "
                            "ORDER BY id", dev["id"])
    return dev["hardware_version"], cur, float(dev["seen"]), [(h[0], h[1]) for h in hist]


def row(pid, serial, hw, versions, seen):
    return (pid, serial, hw, "main", tuple(versions), "memfault", seen, False)


# (case, earlier flushes, flush under test, expected hardware, current, history, last_seen from flush n)
T0 = time.time() - 3600
CASES = [
    ("new device, one version", [], ("evt", ["1.0"], T0), "evt", "1.0", [("1.0", None)], 1),
    ("new device, no version", [], ("evt", [], T0), "evt", None, [], 1),
    ("versions in one batch chain their previous", [("evt", ["1.0"], T0)], ("evt", ["2.0", "3.0"], T0 + 10),
     "evt", "3.0", [("1.0", None), ("2.0", "1.0"), ("3.0", "2.0")], 0),
    ("back and forth in one batch", [("evt", ["1.0"], T0)], ("evt", ["2.0", "1.0", "2.0"], T0 + 10),
     "evt", "2.0", [("1.0", None), ("2.0", "1.0"), ("1.0", "2.0"), ("2.0", "1.0")], 0),
    ("the stored version again: no history", [("evt", ["1.0"], T0)], ("evt", ["1.0"], T0 + 1000),
     "evt", "1.0", [("1.0", None)], 1),
    ("seen within the granularity: last_seen kept", [("evt", ["1.0"], T0)], ("evt", ["1.0"], T0 + 10),
     "evt", "1.0", [("1.0", None)], 0),
    ("seen after the granularity: last_seen moves", [("evt", ["1.0"], T0)], ("evt", ["1.0"], T0 + 301),
     "evt", "1.0", [("1.0", None)], 1),
    ("hardware filled once, never changed", [(None, ["1.0"], T0)], ("dvt", ["1.0"], T0 + 10),
     "dvt", "1.0", [("1.0", None)], 1),
    ("hardware is immutable", [("evt", ["1.0"], T0)], ("dvt", ["1.0"], T0 + 1000),
     "evt", "1.0", [("1.0", None)], 1),
    ("an older check-in never moves last_seen back", [("evt", ["1.0"], T0 + 2000)], ("evt", ["1.0"], T0),
     "evt", "1.0", [("1.0", None)], 0),
]


@pytest.mark.parametrize("case,before,flush,hw,current,history,seen_from", CASES, ids=[c[0] for c in CASES])
async def test_flush_row(db, case, before, flush, hw, current, history, seen_from):
    pool, pid = db
    serial = "FL-" + case.replace(" ", "-")[:40]
    flushes = [*before, flush]
    for f_hw, versions, seen in flushes:
        async with pool.acquire() as conn:
            await checkins_store.flush_checkins(conn, [row(pid, serial, f_hw, versions, seen)],
                                       last_seen_granularity=GRANULARITY)
    got_hw, got_cur, got_seen, got_hist = await state(pool, pid, serial)
    assert (got_hw, got_cur, got_hist) == (hw, current, history)
    assert got_seen == pytest.approx(flushes[-1 if seen_from else 0][2], abs=1e-3)


async def test_one_batch_of_many_devices_and_software_types(db):
    pool, pid = db
    rows = [row(pid, f"FL-MANY-{i}", "evt", [f"{i}.0"], T0) for i in range(300)]
    rows += [(pid, "FL-MANY-0", "evt", "bootloader", ("b1",), "memfault", T0, False)]  # second type, same device
    async with pool.acquire() as conn:
        await checkins_store.flush_checkins(conn, rows, last_seen_granularity=GRANULARITY)
    got = await pool.fetch("SELECT d.serial, s.software_type, s.version FROM devices d "
                           "JOIN device_software s ON s.device_id = d.id WHERE d.serial LIKE 'FL-MANY-%'")
    assert {(g[0], g[1], g[2]) for g in got} == {(r[1], r[3], r[4][0]) for r in rows}


async def test_concurrent_flushes_of_the_same_new_devices_lose_nothing(db):
    """Two workers flushing the same new devices at once: each device is created once and both
    workers' versions land in its history."""
    pool, pid = db
    serials = [f"FL-RACE-{i}" for i in range(200)]

    async def flush(version, seen):
        async with pool.acquire() as conn:
            for attempt in range(5):  # a deadlock between the two is retried, as the buffer does
                try:
                    await checkins_store.flush_checkins(conn, [row(pid, s, "evt", [version], seen) for s in serials],
                                               last_seen_granularity=GRANULARITY)
                    return
                except asyncpg.DeadlockDetectedError:
                    continue
            raise AssertionError("five deadlocks in a row")

    await asyncio.gather(flush("1.0", T0), flush("2.0", T0 + 1))
    n = await pool.fetchval("SELECT count(*) FROM devices WHERE serial LIKE 'FL-RACE-%'")
    hist = await pool.fetch("SELECT d.serial, array_agg(h.version ORDER BY h.id) AS v FROM device_version_history h "
                            "JOIN devices d ON d.id = h.device_id WHERE d.serial LIKE 'FL-RACE-%' GROUP BY d.serial")
    assert n == len(serials)
    assert len(hist) == len(serials) and all(sorted(h["v"]) == ["1.0", "2.0"] for h in hist)


async def test_stop_lets_a_flush_under_way_finish_instead_of_cancelling_it(db, monkeypatch):
    """A flush cancelled mid-write can leave its rows committed but unrecorded (the last flush
    then writes them again): stop() waits for it. The flush is held on a row lock, so it is
    surely under way when stop() is called; it must then be the only write of its rows."""
    from gateway.memory.checkins import CheckinBuffer

    pool, pid = db
    writes = []
    write = checkins_store.flush_checkins

    async def counted(conn, rows, **kw):
        writes.append(rows)
        return await write(conn, rows, **kw)

    async with pool.acquire() as conn:
        await checkins_store.flush_checkins(conn, [row(pid, "STOP-1", "evt", ["1.0"], T0)], last_seen_granularity=GRANULARITY)
    monkeypatch.setattr(checkins_store, "flush_checkins", counted)
    buf = CheckinBuffer(pool, interval=0.01, last_seen_granularity=GRANULARITY)
    blocker = await pool.acquire()
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("SELECT 1 FROM device_software s JOIN devices d ON d.id = s.device_id "
                          "WHERE d.project_id = $1 AND d.serial = 'STOP-1' FOR UPDATE OF s", pid)
    try:
        buf.add(pid, "STOP-1", "evt", "main", "2.0", "memfault")
        buf.start(preload=False)
        waiting = "SELECT pid, query_start FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%unnest%'"
        for _ in range(500):  # until the flush waits on the lock
            flush = await pool.fetch(waiting)
            if flush:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the flush never reached the locked row")
        stopping = asyncio.ensure_future(buf.stop())
        for _ in range(5):  # let stop() run up to where it waits (it used to cancel the flush here)
            await asyncio.sleep(0)
        assert not stopping.done()
        # the same statement still waits: not cancelled (and then sent again)
        assert await pool.fetch(waiting) == flush
    finally:
        await tx.rollback()
        await pool.release(blocker)
    await asyncio.wait_for(stopping, 10)
    assert len(buf) == 0 and len(writes) == 1  # written once: not cancelled, then sent again
    assert (await state(pool, pid, "STOP-1"))[3] == [("1.0", None), ("2.0", "1.0")]
