"""Upload URLs: single-use, size-bounded, unique temporary files, storage errors told apart from
database outages, and the cleanup of unused uploads and orphaned temporary files."""
from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ORG, ORG_TOKEN, PROJECT, P, auth_headers, upload_release

from gateway.appkeys import POOL, RESOURCES, SETTINGS, SIGNER

CHUNK = 256 * 1024


def storage(client) -> Path:
    return Path(client.server.app[SETTINGS].effective_storage_dir)


def blob_path(client, content: bytes) -> Path:
    sha = hashlib.sha256(content).hexdigest()
    return storage(client) / sha[:2] / sha


def temp_files(client) -> list[Path]:
    return sorted((storage(client) / "tmp").iterdir())


async def new_upload(client, size: int | None = None) -> tuple[str, str]:
    """(token, path of the signed upload URL) through POST .../upload."""
    body = {"kind": "OTA_PAYLOAD", **({"size": size} if size is not None else {})}
    r = await client.post(P + "/upload", json=body, headers=auth_headers())
    assert r.status == 200, await r.text()
    up = (await r.json())["data"]
    return up["token"], up["upload_url"].split("gw.test:8080", 1)[1]


async def row(client, token: str):
    return await client.server.app[POOL].fetchrow("SELECT * FROM uploads WHERE token = $1", token)


def held(content: bytes, release: asyncio.Event):
    """A chunked request body: its first chunk now, the rest once `release` is set."""
    async def body():
        yield content[:CHUNK]
        await release.wait()
        yield content[CHUNK:]
    return body()


class Opened:
    """Temporary files the gateway opened in the store: a PUT is receiving."""

    def __init__(self):
        self.names: list[str] = []
        self.changed = asyncio.Event()

    async def wait(self, n: int = 1) -> None:
        async with asyncio.timeout(10):
            while len(self.names) < n:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def receiving(client, monkeypatch):
    opened = Opened()
    mkstemp = tempfile.mkstemp

    def spy(*args, **kwargs):
        fd, name = mkstemp(*args, **kwargs)
        if Path(name).parent == storage(client) / "tmp":
            opened.names.append(name)
            opened.changed.set()
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", spy)
    return opened


async def test_an_upload_url_takes_one_put(client):
    token, path = await new_upload(client)
    first, second = os.urandom(5000), os.urandom(5000)
    assert (await client.put(path, data=first)).status == 200
    r = await client.put(path, data=second)
    assert r.status == 409 and (await r.json())["error"]["type"] == "upload_used"
    assert not blob_path(client, second).exists()
    assert (await row(client, token))["sha256"] == hashlib.sha256(first).hexdigest()


async def test_a_second_put_while_the_first_is_in_progress_is_409(client, receiving):
    token, path = await new_upload(client)
    content, other, release = os.urandom(CHUNK + 1000), os.urandom(1000), asyncio.Event()
    first = asyncio.create_task(client.put(path, data=held(content, release)))
    await receiving.wait()
    r = await client.put(path, data=other)
    assert r.status == 409 and (await r.json())["error"]["type"] == "upload_used"
    release.set()
    assert (await first).status == 200
    assert blob_path(client, content).read_bytes() == content and not blob_path(client, other).exists()
    assert (await row(client, token))["status"] == "complete"


async def upload_with_limit(client, max_size: int) -> tuple[str, str]:
    """An upload created with a size (services.releases.create_upload, as POST .../upload {size})."""
    from gateway.api.artifacts import new_upload_token
    from gateway.services import project_context
    from gateway.services import releases as releases_service
    from gateway.services.auth import authenticate

    app = client.server.app
    ctx = await project_context(app[RESOURCES], await authenticate(app[POOL], None, ORG_TOKEN), ORG, PROJECT)
    token = new_upload_token()
    await releases_service.create_upload(ctx, token, 3600, max_size=max_size)
    return token, app[SIGNER].sign(f"/api/v0/uploads/{token}").split("gw.test:8080", 1)[1]


async def test_a_put_over_the_size_given_is_413_and_stores_nothing(client):
    token, path = await upload_with_limit(client, 1000)
    over = os.urandom(1001)
    r = await client.put(path, data=over)  # Content-Length says so
    assert r.status == 413 and "1000 bytes" in (await r.json())["error"]["message"]

    async def chunked():  # no Content-Length: found out while receiving
        yield over

    r = await client.put(path, data=chunked())
    assert r.status == 413 and "1000 bytes" in (await r.json())["error"]["message"]
    assert not blob_path(client, over).exists() and temp_files(client) == []
    up = await row(client, token)
    assert up["status"] == "pending" and up["sha256"] is None
    exact = over[:1000]
    assert (await client.put(path, data=exact)).status == 200  # a refused PUT did not use the URL up
    assert blob_path(client, exact).read_bytes() == exact


async def test_the_project_wide_limit_always_applies(client):
    settings = client.server.app[SETTINGS]
    token, path = await new_upload(client)
    over = os.urandom(3000)

    async def chunked():
        yield over

    settings.max_upload_size, saved = 2000, settings.max_upload_size
    try:
        r = await client.put(path, data=chunked())
    finally:
        settings.max_upload_size = saved
    assert r.status == 413 and "2000 bytes" in (await r.json())["error"]["message"]
    assert not blob_path(client, over).exists() and temp_files(client) == []


async def test_concurrent_identical_uploads_both_succeed(client, receiving):
    # compressible, so that both also write a gzip sidecar at the same time
    content = os.urandom(2 * 1024 * 1024).hex().encode()
    (t1, p1), (t2, p2) = await new_upload(client), await new_upload(client)
    release = asyncio.Event()
    puts = [asyncio.create_task(client.put(p, data=held(content, release))) for p in (p1, p2)]
    await receiving.wait(2)  # both are receiving: let them finish together
    release.set()
    responses = await asyncio.gather(*puts)
    assert [r.status for r in responses] == [200, 200], [await r.text() for r in responses]
    final = blob_path(client, content)
    assert final.read_bytes() == content
    assert sorted(p.name for p in final.parent.iterdir() if p.name.startswith(final.name)) == \
        [final.name, final.name + ".gz"]
    assert temp_files(client) == []
    assert {(await row(client, t))["sha256"] for t in (t1, t2)} == {final.name}


@pytest.mark.parametrize("call, code, status, type_", [
    ("write", errno.ENOSPC, 507, "insufficient_storage"),
    ("fsync", errno.ENOSPC, 507, "insufficient_storage"),
    ("write", errno.EIO, 500, "storage_failed"),
])
async def test_a_storage_failure_is_not_a_database_outage(client, monkeypatch, call, code, status, type_):
    token, path = await new_upload(client)
    content = os.urandom(10_000)
    real, tmp = getattr(os, call), str(storage(client) / "tmp")

    def failing(fd, *args):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(tmp):
            raise OSError(code, os.strerror(code))
        return real(fd, *args)

    monkeypatch.setattr(os, call, failing)
    r = await client.put(path, data=content)
    error = (await r.json())["error"]
    assert (r.status, error["type"]) == (status, type_)
    assert "storage failed" in error["message"] and "database" not in error["message"]
    assert temp_files(client) == [] and not blob_path(client, content).exists()
    monkeypatch.setattr(os, call, real)
    assert (await client.put(path, data=content)).status == 200  # the failed PUT did not use the URL up


async def test_a_database_outage_during_an_upload_is_still_503(client, monkeypatch):
    from gateway.store import releases as releases_store

    async def refused(*args, **kwargs):
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    token, path = await new_upload(client)
    monkeypatch.setattr(releases_store, "complete_upload", refused)
    r = await client.put(path, data=os.urandom(1000))
    assert r.status == 503 and "database" in (await r.json())["error"]["message"]
    assert temp_files(client) == []


async def test_cleanup_removes_expired_unused_uploads_and_keeps_referenced_blobs(client):
    from gateway.api.artifacts import clean_up

    pool = client.server.app[POOL]
    attached, unused, live = os.urandom(6000), b"never attached " * 1000, os.urandom(500)
    await upload_release(client, attached, version="9.0.0", software_type="cleanup", hardware_version="c1")
    t_attached = await pool.fetchval("SELECT token FROM uploads WHERE sha256 = $1",
                                     hashlib.sha256(attached).hexdigest())
    t_unused, p_unused = await new_upload(client)
    assert (await client.put(p_unused, data=unused)).status == 200
    assert blob_path(client, unused).with_suffix(".gz").exists()
    t_pending, _ = await new_upload(client)  # never PUT
    t_dup, p_dup = await new_upload(client)  # the same bytes as an upload that has not expired
    t_live, p_live = await new_upload(client)
    for p in (p_dup, p_live):
        assert (await client.put(p, data=live)).status == 200
    # another project's upload of the bytes this project's payload has
    other = await pool.fetchval("INSERT INTO projects (org_id, slug, name) SELECT org_id, 'other-uploads', 'o' "
                                "FROM projects WHERE slug = $1 RETURNING id", PROJECT)
    await pool.execute("INSERT INTO uploads (project_id, token, status, size, sha256, md5, sha1, expires_at) "
                       "SELECT $1, 'up_other', status, size, sha256, md5, sha1, expires_at FROM uploads "
                       "WHERE token = $2", other, t_attached)
    await pool.execute("UPDATE uploads SET expires_at = now() - interval '1 day' WHERE token <> $1", t_live)
    try:
        await clean_up(client.server.app)
        kept = {r["token"] for r in await pool.fetch("SELECT token FROM uploads")}
    finally:  # a project without a cohort is no project the other tests' gateway can load
        await pool.execute("DELETE FROM uploads WHERE project_id = $1", other)
        await pool.execute("DELETE FROM projects WHERE id = $1", other)
    assert not kept & {t_unused, t_pending, t_dup, "up_other"} and {t_attached, t_live} <= kept
    assert not blob_path(client, unused).exists() and not blob_path(client, unused).with_suffix(".gz").exists()
    assert blob_path(client, attached).read_bytes() == attached  # a payload refers to it
    assert blob_path(client, live).read_bytes() == live  # an upload refers to it


async def test_orphaned_temp_files_are_removed_at_start(aiohttp_client, settings):
    from gateway.app import init_app

    root = Path(settings.effective_storage_dir)
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    (root / "ab").mkdir(exist_ok=True)
    old_upload, old_sidecar = root / "tmp" / "upload-killed", root / "ab" / ("ab" * 32 + ".gz.tmp")
    fresh = root / "tmp" / "upload-fresh"  # maybe another process's upload in progress
    for f in (old_upload, old_sidecar, fresh):
        f.write_bytes(b"half a firmware")
    for f in (old_upload, old_sidecar):
        os.utime(f, (time.time() - 7200, time.time() - 7200))
    await aiohttp_client(init_app(settings))
    assert not old_upload.exists() and not old_sidecar.exists() and fresh.exists()
    fresh.unlink()


async def test_cleanup_keeps_the_temp_file_of_an_upload_in_progress(client, receiving):
    from gateway.api.artifacts import BLOBS

    token, path = await new_upload(client)
    content, release = os.urandom(CHUNK + 5000), asyncio.Event()
    put = asyncio.create_task(client.put(path, data=held(content, release)))
    await receiving.wait()
    [tmp] = temp_files(client)
    os.utime(tmp, (time.time() - 7200, time.time() - 7200))  # as if it stalled for two hours
    client.server.app[BLOBS].remove_stale(0)
    assert tmp.exists()
    from gateway.api.artifacts import clean_up

    await clean_up(client.server.app)  # the periodic run
    assert tmp.exists()
    release.set()
    assert (await put).status == 200 and blob_path(client, content).read_bytes() == content
    assert temp_files(client) == []
