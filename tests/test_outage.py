"""A database outage: polls keep being answered from memory, check-ins wait in the buffer,
durable writes answer 503 + Retry-After, and everything catches up when the database returns."""
from __future__ import annotations

import shutil
import tempfile

import asyncpg
import pytest
from conftest import ORG, PROJECT, PROJECT_KEY, ORG_TOKEN, P, auth_headers, deploy, upload_release

from gateway.appkeys import CHECKINS, MIRROR
from gateway.cli import prepare_database
from gateway.config import Settings
from gateway.pgembed import EmbeddedPostgres

LATEST = "/api/v0/releases/latest/url"
KEY = {"Memfault-Project-Key": PROJECT_KEY}
GW = {"Authorization": f"GatewayToken {PROJECT_KEY}"}


@pytest.fixture(scope="module")
def own_pg():
    """This module stops and starts its database, so it gets a cluster of its own."""
    root = tempfile.mkdtemp(prefix="ota-outage-")
    pg = EmbeddedPostgres(root, fast=True)
    try:
        yield pg, pg.start()
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def app_client(aiohttp_client, own_pg, data_dir):
    import asyncio

    from gateway.app import init_app

    pg, dsn = own_pg
    settings = Settings(database_url=dsn, data_dir=data_dir, public_url="http://gw.test:8080", flush_interval=0.1,
                        bootstrap={"org": ORG, "project": PROJECT, "org_token": ORG_TOKEN, "project_key": PROJECT_KEY})
    await asyncio.get_running_loop().run_in_executor(None, lambda: asyncio.run(prepare_database(settings)))
    return pg, dsn, await aiohttp_client(init_app(settings))


def params(serial, current):
    return {"device_serial": serial, "hardware_version": "evt", "software_type": "main", "current_version": current}


async def test_database_outage_and_recovery(app_client):
    import asyncio

    pg, dsn, client = app_client
    await upload_release(client, b"outage fw" * 100, version="1.0.0")
    await deploy(client, "1.0.0")
    app = client.server.app
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, pg.stop)
    try:
        # steady-state polls keep being answered from the in-memory mirror
        for i in range(30):
            r = await client.get(LATEST, params=params(f"OUT{i}", "0.1.0"), headers=KEY)
            assert r.status == 200
        r = await client.get(LATEST, params=params("OUT0", "1.0.0"), headers=KEY)
        assert r.status == 204
        # a DDI device never seen before gets "ask again soon", and its poll is recorded later
        for serial in ("OUTDDI1", "OUTDDI2"):
            r = await client.get(f"/{PROJECT}/controller/v1/{serial}", headers=GW)
            assert r.status == 200 and r.headers["ota-gateway-reason"] == "database_unavailable"
        # durable writes fail fast and clearly
        r = await client.post(P + "/cohorts", json={"slug": "during", "name": "during"}, headers=auth_headers())
        assert r.status == 503 and r.headers["Retry-After"]
        assert (await r.json())["error"]["type"] == "unavailable"
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/healthz")).status == 200
        # check-ins wait in the buffer (a failed flush puts them back)
        with pytest.raises(Exception):
            await app[CHECKINS].flush()
        assert len(app[CHECKINS]) >= 30
    finally:
        await loop.run_in_executor(None, pg.start)
    # back: the buffer drains, writes work, notifications flow again (bounded waits)
    deadline = loop.time() + 15
    while (len(app[CHECKINS]) or not app[MIRROR].connected) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert app[MIRROR].connected and app[MIRROR].reconnects >= 1
    await app[CHECKINS].flush()
    conn = await asyncpg.connect(dsn)
    try:
        n = await conn.fetchval("SELECT count(*) FROM devices WHERE serial LIKE 'OUT%' AND serial NOT LIKE 'OUTDDI%'")
        ddi = await conn.fetchval("SELECT count(*) FROM devices WHERE serial LIKE 'OUTDDI%'")
    finally:
        await conn.close()
    assert (n, ddi) == (30, 2)
    r = await client.post(P + "/cohorts", json={"slug": "after", "name": "after"}, headers=auth_headers())
    assert r.status == 201
    assert (await client.get("/readyz")).status == 200
