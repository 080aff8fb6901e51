"""Fixtures: one throwaway PostgreSQL cluster per test session, a fresh database per module,
and an in-process gateway app driven over HTTP."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import shutil
import tempfile

import asyncpg
import pytest

from gateway.cli import prepare_database
from gateway.config import Settings
from gateway.pgembed import EmbeddedPostgres

ORG, PROJECT, ORG_TOKEN, PROJECT_KEY = "acme", "smart-sink", "oat_test_token_123", "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="session")
def pg_cluster():
    dsn = os.environ.get("OTA_TEST_DATABASE_URL")
    if dsn:  # an externally managed server: databases are still created per module
        yield dsn
        return
    root = tempfile.mkdtemp(prefix="ota-test-pg-")
    pg = EmbeddedPostgres(root, fast=True, dbname="postgres")
    try:
        yield pg.start()
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def create_database(pg_cluster: str, name: str) -> str:
    """An empty database `name` on the test cluster (dropped first if it exists); its URL."""
    admin = pg_cluster.rsplit("/", 1)[0] + "/postgres"

    async def create():
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return pg_cluster.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="module")
def database_url(pg_cluster, request):
    """A fresh database for each test module, with schema and the bootstrap project."""
    name = "t_" + re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1])[:50]
    url = create_database(pg_cluster, name)
    s = Settings(database_url=url, bootstrap={"org": ORG, "project": PROJECT, "org_token": ORG_TOKEN,
                                              "project_key": PROJECT_KEY})
    asyncio.run(prepare_database(s))
    return url


@pytest.fixture(scope="module")
def data_dir():
    d = tempfile.mkdtemp(prefix="ota-test-data-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def settings(database_url, data_dir):
    return Settings(database_url=database_url, data_dir=data_dir, public_url="http://gw.test:8080",
                    flush_interval=0.2, workers=1)


@pytest.fixture
async def project_pool(database_url):
    """A small pool on the module's database and the bootstrap project's id (store-level tests)."""
    from gateway.store import db as db_store

    pool = await db_store.create_pool(database_url, max_size=4)
    pid = await pool.fetchval("SELECT id FROM projects WHERE slug = $1", PROJECT)
    yield pool, pid
    await pool.close()


@pytest.fixture
async def client(aiohttp_client, settings):
    from gateway.app import init_app

    return await aiohttp_client(init_app(settings))


def auth_headers(token: str = ORG_TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def basic_token_headers(token: str = ORG_TOKEN) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f":{token}".encode()).decode()}


P = f"/api/v0/organizations/{ORG}/projects/{PROJECT}"


async def upload_release(client, content: bytes, *, version, software_type="main", hardware_version="evt",
                         must_pass_through=False, name="app.bin", extra=None, expect=201):
    """Upload a payload the way memfault-cli does; return the ota_payload response JSON."""
    r = await client.post(P + "/upload", json={"kind": "OTA_PAYLOAD", "size": len(content)}, headers=auth_headers())
    assert r.status == 200, await r.text()
    up = (await r.json())["data"]
    path = up["upload_url"].split("gw.test:8080", 1)[1]
    r = await client.put(path, data=content)
    assert r.status == 200, await r.text()
    body = {"file": {"token": up["token"], "md5": hashlib.md5(content).hexdigest(), "name": name},
            "software_version": {"version": version, "software_type": software_type},
            "hardware_version": hardware_version, "must_pass_through": must_pass_through, "notes": ""}
    if extra:
        body["extra_info"] = extra
    r = await client.post(P + "/releases/ota_payload", json=body, headers=auth_headers())
    assert r.status == expect, await r.text()
    return await r.json()


async def deploy(client, release, cohort="default", percent=None, expect=(200, 201)):
    body = {"type": "normal" if percent is None else "staged_rollout", "release": release, "cohort": cohort}
    if percent is not None:
        body["rollout_percent"] = percent
    r = await client.post(P + "/deployments", json=body, headers=auth_headers())
    assert r.status in expect, await r.text()
    return (await r.json())["data"]


async def wait_mirror(client, predicate, timeout=5.0):
    """Wait (bounded) until the app's mirror satisfies predicate(project_view) after a NOTIFY."""
    from gateway.appkeys import MIRROR

    mirror = client.server.app[MIRROR]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        view = mirror.by_slug.get(PROJECT)
        if view is not None and predicate(view):
            return view
        await asyncio.sleep(0.01)
    raise AssertionError("mirror did not catch up")
