"""Batched DDI state loading: first polls of many devices share one round trip."""
import asyncio

import asyncpg
import pytest

from gateway.memory.ddi_loader import StateLoader


@pytest.fixture
async def pool(database_url):
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    async with p.acquire() as conn:
        pid = await conn.fetchval("SELECT id FROM projects ORDER BY id LIMIT 1")
        cohort = await conn.fetchval("SELECT id FROM cohorts WHERE project_id = $1 AND is_default", pid)
        await conn.executemany(
            "INSERT INTO devices (project_id, serial, hardware_version, cohort_id) VALUES ($1, $2, 'evt', $3) "
            "ON CONFLICT DO NOTHING", [(pid, f"LOADER-{i}", cohort) for i in range(20)])
    yield p, pid
    await p.close()


async def test_concurrent_loads_share_one_batch(pool):
    pool, project_id = pool
    loader = StateLoader(lambda: pool)
    serials = [f"LOADER-{i}" for i in range(20)] + ["LOADER-unknown", "LOADER-3"]  # one twice, one unknown
    rows = await asyncio.gather(*(loader.load(project_id, s) for s in serials))
    assert loader.batches == 1
    assert [r["serial"] if r else None for r in rows] == serials[:20] + [None, "LOADER-3"]
    assert all(r["hardware_version"] == "evt" for r in rows if r)


async def test_a_failed_batch_fails_every_waiter_and_the_next_one_works(pool, database_url):
    pool, project_id = pool
    broken = await asyncpg.create_pool(database_url, min_size=0, max_size=1)
    await broken.close()  # acquiring from a closed pool raises
    use = [broken]
    loader = StateLoader(lambda: use[0])
    results = await asyncio.gather(*(loader.load(project_id, f"LOADER-{i}") for i in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results)
    use[0] = pool
    assert (await loader.load(project_id, "LOADER-1"))["serial"] == "LOADER-1"
