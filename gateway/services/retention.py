"""Retention: the version history, DDI feedback and the audit log are pruned past their
settings' age (OTA_RETAIN_HISTORY_DAYS, OTA_RETAIN_FEEDBACK_DAYS, OTA_RETAIN_AUDIT_DAYS; 0 keeps
forever), never a device's newest version row nor an open action's feedback.

Every gateway process runs a `RetentionJob`: about once a minute it tries each table's job, and
runs one only after claiming the job's period (an hour) in `periodic_jobs` (store.retention.claim):
one process of all, on any host, prunes each table per period; the others find it taken and do
nothing. A run deletes in batches of at most BATCH rows, each its own statement and transaction
(short row locks, no long transaction holding back VACUUM), until no old row is left or BUDGET
seconds have passed; what is left waits for the next period. BUDGET plus the pool's statement
timeout (30 s) is far below PERIOD, so two runs of a job never overlap.

Not a management write (`changes.write`): no caller identity, nothing another process mirrors or
caches changes (the DDI states and the resolution tables never read these rows), so no audit entry
and no NOTIFY. How each run ended is kept in `periodic_jobs` (finished_at, result) and logged.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from dataclasses import asdict, dataclass

import asyncpg

from gateway.aio import cancel_and_wait
from gateway.store import retention as retention_store

log = logging.getLogger(__name__)

PERIOD = 3600.0          # seconds: each table is pruned once an hour, by one process of all
TICK = 60.0              # seconds (±50 %): how often each process tries to claim a period
BATCH = 10_000           # rows examined (so at most deleted) per statement
BUDGET = 60.0            # seconds a run of one job may go on starting batches
HISTORY_FLOOR_DAYS = 14  # rollback detection reads 14 days of version history: never keep less


@dataclass(frozen=True, slots=True)
class Policy:
    table: str               # one of store.retention.TABLES
    days: int                # rows older than this many days may go

    @property
    def job(self) -> str:
        return "retention:" + self.table


@dataclass(slots=True)
class Outcome:
    """How one run of one job went."""
    table: str
    days: int
    examined: int = 0
    deleted: int = 0
    statements: int = 0
    seconds: float = 0.0
    complete: bool = False   # every row older than the cutoff examined (False: out of time)


def policies(settings) -> tuple[Policy, ...]:
    """The tables to prune and their retention, from the settings (0: kept forever, no job)."""
    wanted = (("device_version_history", settings.retain_history_days),
              ("device_action_feedback", settings.retain_feedback_days),
              ("audit_log", settings.retain_audit_days))
    out = []
    for table, days in wanted:
        if days <= 0:
            continue
        if table == "device_version_history" and days < HISTORY_FLOOR_DAYS:
            log.warning("OTA_RETAIN_HISTORY_DAYS=%d keeps less than rollback detection reads: %d days are kept",
                        days, HISTORY_FLOOR_DAYS)
            days = HISTORY_FLOOR_DAYS
        out.append(Policy(table, days))
    return tuple(out)


async def prune(pool: asyncpg.Pool, policy: Policy, *, batch: int = BATCH, budget: float = BUDGET) -> Outcome:
    """One run of one job (unclaimed: callers claim first): batches until every row older than the
    cutoff (fixed at the start) was examined, or `budget` seconds have passed. A connection is
    taken from the pool per batch, so the run never holds one the requests need for long."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    out = Outcome(policy.table, policy.days)
    async with pool.acquire() as conn:
        before = await retention_store.cutoff(conn, policy.days)
    after = None
    while True:
        async with pool.acquire() as conn:
            b = await retention_store.prune_batch(conn, policy.table, before, after, batch)
        out.statements += 1
        if b is not None:
            out.examined += b.examined
            out.deleted += b.deleted
            after = b.last
        if b is None or b.examined < batch:
            out.complete = True
            break
        if loop.time() - started >= budget:
            break
    out.seconds = round(loop.time() - started, 3)
    return out


async def run_due(pool: asyncpg.Pool, policies: tuple[Policy, ...], *, period: float = PERIOD,
                  batch: int = BATCH, budget: float = BUDGET, by: str | None = None) -> dict[str, Outcome]:
    """Run each job whose period this process claims; returns what ran, by job name."""
    by = by or f"{socket.gethostname()}:{os.getpid()}"
    ran: dict[str, Outcome] = {}
    for policy in policies:
        async with pool.acquire() as conn:
            if not await retention_store.claim(conn, policy.job, period, by):
                continue
        try:
            out = await prune(pool, policy, batch=batch, budget=budget)
        except (OSError, asyncpg.PostgresError) as e:  # TimeoutError is an OSError
            log.warning("retention: pruning %s failed (tried again next period): %s", policy.table, e)
            continue
        async with pool.acquire() as conn:
            await retention_store.finish(conn, policy.job, asdict(out))
        level = logging.INFO if out.deleted or not out.complete else logging.DEBUG
        log.log(level, "retention: %s: %d rows older than %d days deleted of %d examined in %d statements, "
                "%.1fs%s", out.table, out.deleted, out.days, out.examined, out.statements, out.seconds,
                "" if out.complete else " (out of time: the rest next period)")
        ran[policy.job] = out
    return ran


class RetentionJob:
    """A gateway process's part: try the due jobs about every TICK seconds (jittered, so the
    processes of a fleet restarted at once do not try together), from TICK/2 after start."""

    def __init__(self, pool: asyncpg.Pool, policies: tuple[Policy, ...], *, tick: float = TICK):
        self.pool = pool
        self.policies = policies
        self.tick = tick
        self._task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.policies and self._task is None:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop at once: a batch in flight rolls back; its period is redone after it has passed."""
        await cancel_and_wait(self._task)
        self._task = None

    async def run_once(self) -> dict[str, Outcome]:
        return await run_due(self.pool, self.policies)

    async def _loop(self) -> None:
        rng = random.Random()
        while True:
            await asyncio.sleep(self.tick * rng.uniform(0.5, 1.5))
            try:
                await self.run_once()
            except Exception:  # the database away, or a bug: logged, and the loop goes on
                log.exception("retention: a run failed (the jobs not run are tried again in about %.0fs)", self.tick)
