"""Retention: version history, DDI feedback and the audit log are pruned past their settings'
age, never a device's newest version row nor an open action's feedback; one process of all
claims each job's period (the others do nothing); deletes run in bounded batches that walk past
the rows kept."""
from __future__ import annotations

import asyncio

import asyncpg
import pytest
from conftest import PROJECT

from gateway.config import Settings
from gateway.services import retention
from gateway.store import db as db_store
from gateway.store import retention as retention_store

HISTORY = retention.Policy("device_version_history", 180)
FEEDBACK = retention.Policy("device_action_feedback", 180)
AUDIT = retention.Policy("audit_log", 730)


@pytest.fixture
async def db(database_url):
    pool = await db_store.create_pool(database_url, max_size=4)
    await pool.execute("TRUNCATE device_version_history, device_action_feedback, audit_log, periodic_jobs")
    pid = await pool.fetchval("SELECT id FROM projects WHERE slug = $1", PROJECT)
    yield pool, pid
    await pool.close()


_serials = iter(range(1, 10**6))


async def device(pool, pid) -> int:
    return await pool.fetchval(
        "INSERT INTO devices (project_id, serial, cohort_id) "
        "SELECT $1, $2, id FROM cohorts WHERE project_id = $1 AND is_default RETURNING id",
        pid, f"RET{next(_serials)}")


async def history(pool, device_id: int, sw: str, version: str, days_ago: float) -> int:
    return await pool.fetchval(
        "INSERT INTO device_version_history (device_id, software_type, version, seen_at) "
        "VALUES ($1, $2, $3, now() - make_interval(secs => $4 * 86400)) RETURNING id",
        device_id, sw, version, days_ago)


async def action(pool, pid, device_id: int, status: str) -> int:
    return await pool.fetchval(
        "INSERT INTO device_actions (project_id, device_id, software_type, version, status) "
        "VALUES ($1, $2, 'main', '9.9.9', $3) RETURNING id", pid, device_id, status)


async def feedback(pool, action_id: int, days_ago: float) -> int:
    return await pool.fetchval(
        "INSERT INTO device_action_feedback (action_id, kind, execution, finished, received_at) "
        "VALUES ($1, 'deployment', 'proceeding', 'none', now() - make_interval(secs => $2 * 86400)) RETURNING id",
        action_id, days_ago)


async def audit(pool, pid, days_ago: float, n: int = 1) -> None:
    await pool.execute(
        "INSERT INTO audit_log (project_id, actor, action, object, at) "
        "SELECT $1, 'test', 'test.thing', 'thing:' || i, now() - make_interval(secs => $2 * 86400) "
        "FROM generate_series(1, $3) i", pid, days_ago, n)


async def ids(pool, table: str) -> set[int]:
    return {r[0] for r in await pool.fetch(f"SELECT id FROM {table}")}


async def test_history_older_than_the_setting_is_pruned_but_each_devices_newest_row_kept(db):
    pool, pid = db
    a, b, c, e = [await device(pool, pid) for _ in range(4)]
    a_old = await history(pool, a, "main", "1.0", 400)
    a_older_newest = await history(pool, a, "main", "1.1", 200)   # old, but the newest of (a, main)
    a_boot = await history(pool, a, "boot", "7", 500)              # the only row of (a, boot)
    b_old = await history(pool, b, "main", "1.0", 181)
    b_new = await history(pool, b, "main", "2.0", 179)             # within the retention
    b_newest = await history(pool, b, "main", "2.1", 1)
    c_tie_first = await history(pool, c, "main", "3.0", 300)
    c_newest = await history(pool, c, "main", "3.1", 300)
    # c's two rows have the same seen_at: the newest is the later id (the order histories are read in)
    await pool.execute("UPDATE device_version_history SET seen_at = (SELECT seen_at FROM device_version_history "
                       "WHERE id = $1) WHERE id = $2", c_tie_first, c_newest)
    # newest is by when the poll was received: a report written late (a larger id) may be older
    e_newest = await history(pool, e, "main", "4.1", 200)
    e_written_late = await history(pool, e, "main", "4.0", 250)
    result = await retention.prune(pool, HISTORY)
    assert await ids(pool, "device_version_history") == {a_older_newest, a_boot, b_new, b_newest, c_newest, e_newest}
    assert {a_old, b_old, c_tie_first, e_written_late}.isdisjoint(await ids(pool, "device_version_history"))
    assert (result.deleted, result.complete) == (4, True)


async def test_feedback_of_closed_actions_is_pruned_and_of_open_ones_kept(db):
    pool, pid = db
    d = await device(pool, pid)
    done = await action(pool, pid, d, "succeeded")
    failed = await action(pool, pid, d, "failed")
    open_ = await action(pool, pid, await device(pool, pid), "open")
    canceling = await action(pool, pid, await device(pool, pid), "canceling")
    gone = [await feedback(pool, done, 200), await feedback(pool, done, 181), await feedback(pool, failed, 365)]
    kept = [await feedback(pool, done, 179), await feedback(pool, open_, 400), await feedback(pool, open_, 1),
            await feedback(pool, canceling, 300)]
    result = await retention.prune(pool, FEEDBACK)
    assert await ids(pool, "device_action_feedback") == set(kept)
    assert result.deleted == len(gone)


async def test_audit_entries_older_than_the_setting_are_pruned(db):
    pool, pid = db
    await audit(pool, pid, 731, n=3)
    await audit(pool, None, 800)  # organization-level entries too
    await audit(pool, pid, 729, n=2)
    result = await retention.prune(pool, AUDIT)
    assert result.deleted == 4
    ages = [r[0] for r in await pool.fetch("SELECT extract(day FROM now() - at)::int FROM audit_log")]
    assert sorted(ages) == [729, 729]


async def test_settings_give_the_policies_and_zero_keeps_forever(db):
    pool, pid = db
    s = Settings()
    assert (s.retain_history_days, s.retain_feedback_days, s.retain_audit_days) == (180, 180, 730)
    assert set(retention.policies(s)) == {HISTORY, FEEDBACK, AUDIT}
    # history shorter than rollback detection reads is raised to it; 0 (forever): no job at all
    short = retention.policies(Settings(retain_history_days=3, retain_feedback_days=0, retain_audit_days=0))
    assert short == (retention.Policy("device_version_history", retention.HISTORY_FLOOR_DAYS),)
    assert Settings.from_env({"OTA_RETAIN_AUDIT_DAYS": "0"}).retain_audit_days == 0
    await audit(pool, pid, 5000)
    ran = await retention.run_due(pool, short)
    assert set(ran) == {"retention:device_version_history"}
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 1


async def test_two_processes_racing_for_a_period_prune_it_once(db, database_url):
    """Two pools (as two hosts) try every job at once while a third transaction holds the job rows:
    both wait on the same row; when it is released one claims the period, the other finds it taken."""
    pool, pid = db
    d = await device(pool, pid)
    await history(pool, d, "main", "1.0", 200)
    await history(pool, d, "main", "2.0", 1)
    await audit(pool, pid, 800, n=5)
    policies = (HISTORY, FEEDBACK, AUDIT)
    await pool.executemany("INSERT INTO periodic_jobs (job, last_run) VALUES ($1, '-infinity')",
                           [(p.job,) for p in policies])
    other = await db_store.create_pool(database_url, max_size=2)
    holder = await asyncpg.connect(database_url)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT * FROM periodic_jobs FOR UPDATE")
        runs = [asyncio.create_task(retention.run_due(p, policies)) for p in (pool, other)]
        await wait_for(lambda: holder.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"),
            2)
        await tx.commit()
        first, second = await asyncio.gather(*runs)
    finally:
        await holder.close()
        await other.close()
    for p in policies:  # each job ran in exactly one of the two
        assert (p.job in first) != (p.job in second), p.job
    done = {**first, **second}
    assert sum(o.deleted for o in done.values()) == 6
    # the period is taken: nobody runs again until it has passed
    assert await retention.run_due(pool, policies) == {}
    await pool.execute("UPDATE periodic_jobs SET last_run = last_run - make_interval(secs => $1)", retention.PERIOD)
    assert set(await retention.run_due(pool, policies)) == {p.job for p in policies}
    rows = await pool.fetch("SELECT job, last_by, finished_at, result FROM periodic_jobs ORDER BY job")
    assert all(r["finished_at"] is not None and r["result"]["complete"] for r in rows), rows


async def wait_for(read, want, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (got := await read()) != want:
        assert loop.time() < deadline, f"waited for {want}, got {got}"
        await asyncio.sleep(0.01)


@pytest.fixture
def spy(monkeypatch):
    """Every batch statement's outcome (examined, deleted), in order."""
    seen = []
    real = retention_store.prune_batch

    async def counting(*args, **kw):
        batch = await real(*args, **kw)
        seen.append((batch.examined, batch.deleted) if batch else (0, 0))
        return batch

    monkeypatch.setattr(retention_store, "prune_batch", counting)
    return seen


async def test_deletes_run_in_bounded_batches(db, spy):
    pool, pid = db
    await audit(pool, pid, 800, n=1050)
    await audit(pool, pid, 1, n=10)
    result = await retention.prune(pool, AUDIT, batch=100)
    assert result.deleted == 1050 and result.statements == len(spy)
    assert all(examined <= 100 and deleted <= 100 for examined, deleted in spy), spy
    assert len(spy) in (11, 12) and sum(d for _, d in spy) == 1050  # 10 full, 50, and perhaps an empty one
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 10


async def test_rows_kept_do_not_hold_up_the_batches(db, spy):
    """The newest rows of 250 quiet devices come first in time; the batches walk past them (each
    examined once per run) to the 300 rows that can go, instead of meeting them again every batch."""
    pool, pid = db
    for _ in range(250):
        await history(pool, await device(pool, pid), "main", "1.0", 400)
    busy = await device(pool, pid)
    rows = [(busy, "main", f"1.{i}", 300 - i * 0.1) for i in range(300)]
    await pool.executemany("INSERT INTO device_version_history (device_id, software_type, version, seen_at) "
                           "VALUES ($1, $2, $3, now() - make_interval(secs => $4 * 86400))", rows)
    await history(pool, busy, "main", "2.0", 1)
    result = await retention.prune(pool, HISTORY, batch=100)
    assert result.deleted == 300 and result.examined == 250 + 300 and result.complete
    assert len(spy) <= 7 and all(e <= 100 for e, _ in spy), spy
    assert await pool.fetchval("SELECT count(*) FROM device_version_history") == 251


async def test_a_run_stops_at_its_time_budget_and_the_next_period_goes_on(db, spy):
    pool, pid = db
    await audit(pool, pid, 800, n=250)
    first = await retention.run_due(pool, (AUDIT,), batch=100, budget=0)
    assert first["retention:audit_log"].deleted == 100 and not first["retention:audit_log"].complete
    assert len(spy) == 1
    await pool.execute("UPDATE periodic_jobs SET last_run = last_run - make_interval(secs => $1)", retention.PERIOD)
    second = await retention.run_due(pool, (AUDIT,), batch=100)
    assert second["retention:audit_log"].deleted == 150 and second["retention:audit_log"].complete
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_the_gateway_starts_the_job_with_its_settings(db, client):
    from gateway.app import RETENTION

    pool, pid = db
    job = client.server.app[RETENTION]
    assert job.running and set(job.policies) == {HISTORY, FEEDBACK, AUDIT}
    await audit(pool, pid, 731, n=2)
    await audit(pool, pid, 1)
    ran = await job.run_once()
    assert ran["retention:audit_log"].deleted == 2
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 1
    assert await job.run_once() == {}  # this period is done, here and in every other process
