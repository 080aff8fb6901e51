"""Artifact delivery from signed URLs: Range, HEAD, conditional requests, signatures."""
from __future__ import annotations

import hashlib
import os
import time

import pytest
from conftest import PROJECT_KEY, deploy, upload_release

from gateway.appkeys import SIGNER
from gateway.crypto.signing import UrlSigner

CONTENT = os.urandom(100_000)


@pytest.fixture
async def url(client):
    from gateway.appkeys import MIRROR

    view = client.server.app[MIRROR].by_slug["smart-sink"]
    if not view.releases:
        await upload_release(client, CONTENT, version="1.0.0", software_type="art", hardware_version="hw1",
                             name="fw image.bin")
        await deploy(client, "1.0.0")
    r = await client.get("/api/v0/releases/latest/url", params={
        "device_serial": "ART1", "hardware_version": "hw1", "software_type": "art"},
        headers={"Memfault-Project-Key": PROJECT_KEY})
    assert r.status == 200
    return (await r.text()).split("gw.test:8080", 1)[1]


async def test_full_get_and_head(client, url):
    r = await client.get(url, headers={"Accept-Encoding": "gzip, br"})
    body = await r.read()
    assert r.status == 200 and body == CONTENT
    assert int(r.headers["Content-Length"]) == len(CONTENT)
    assert "Content-Encoding" not in r.headers  # firmware is never compressed on the fly
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["ETag"] == f'"{hashlib.sha256(CONTENT).hexdigest()}"'
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "Location" not in r.headers
    h = await client.head(url)
    assert h.status == 200 and int(h.headers["Content-Length"]) == len(CONTENT)
    assert await h.read() == b""


@pytest.mark.parametrize("header, start, end", [
    ("bytes=0-0", 0, 0),
    ("bytes=0-14999", 0, 14999),
    ("bytes=50000-", 50000, len(CONTENT) - 1),
    ("bytes=-100", len(CONTENT) - 100, len(CONTENT) - 1),
    ("bytes=99999-200000", 99999, len(CONTENT) - 1),
])
async def test_ranges_answer_206(client, url, header, start, end):
    r = await client.get(url, headers={"Range": header})
    assert r.status == 206
    assert await r.read() == CONTENT[start:end + 1]
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(CONTENT)}"
    assert int(r.headers["Content-Length"]) == end - start + 1


async def test_unsatisfiable_range_is_416(client, url):
    for header in ("bytes=200000-", "bytes=-0"):
        r = await client.get(url, headers={"Range": header})
        assert r.status == 416
        assert r.headers["Content-Range"] == f"bytes */{len(CONTENT)}"


@pytest.mark.parametrize("header", ["bytes=0-9,20-29", "bytes=0-9,5-15", "bytes=0-1,1-2,2-3,3-4", "items=0-9"])
async def test_several_ranges_or_other_units_get_the_whole_body(client, url, header):
    r = await client.get(url, headers={"Range": header})
    assert r.status == 200 and await r.read() == CONTENT


@pytest.mark.parametrize("header", ["bytes=9-2", "bytes=x-"])
async def test_malformed_ranges_are_416(client, url, header):
    r = await client.get(url, headers={"Range": header})
    assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{len(CONTENT)}"
    assert (await r.json())["error"]["type"] == "invalid_range"


async def test_conditional_requests(client, url):
    etag = (await client.head(url)).headers["ETag"]
    r = await client.get(url, headers={"If-None-Match": etag})
    assert r.status == 304 and await r.read() == b""
    r = await client.get(url, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert r.status == 206 and await r.read() == CONTENT[10:20]
    r = await client.get(url, headers={"Range": "bytes=10-19", "If-Range": '"stale"'})
    assert r.status == 200 and await r.read() == CONTENT
    last_modified = (await client.head(url)).headers["Last-Modified"]
    r = await client.get(url, headers={"If-Modified-Since": last_modified})
    assert r.status == 304
    r = await client.get(url, headers={"Range": "bytes=10-19", "If-Range": last_modified})
    assert r.status == 206
    r = await client.get(url, headers={"Range": "bytes=10-19", "If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert r.status == 200 and await r.read() == CONTENT


async def test_resume_sequence_reassembles_the_file(client, url):
    got = b""
    while len(got) < len(CONTENT):
        r = await client.get(url, headers={"Range": f"bytes={len(got)}-{len(got) + 15359}"})
        assert r.status == 206
        got += await r.read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(CONTENT).digest()


async def test_bad_signatures_are_403(client, url):
    path, query = url.split("?")
    e = query.split("&")[0]
    assert (await client.get(path)).status == 403
    assert (await client.get(path + "?" + e + "&s=AAAAAAAAAAAAAAAAAAAAAAAA")).status == 403
    other = path.rsplit("/", 1)[0] + "/other.bin?" + query  # signature binds the path
    assert (await client.get(other)).status == 403
    signer: UrlSigner = client.server.app[SIGNER]
    expired = signer.sign(path, int(time.time()) - 10)
    assert (await client.get(expired.split("gw.test:8080", 1)[1])).status == 403
    assert (await client.get(url)).status == 200


def test_signer_ignores_host_and_keeps_urls_short():
    a = UrlSigner(b"k" * 32, "https://a.example")
    b = UrlSigner(b"k" * 32, "https://cdn.example:8443")
    path = "/dl/123/" + "x" * 100 + ".bin"
    exp = a.expiry()
    ua, ub = a.sign(path, exp), b.sign(path, exp)
    assert ua.split("?")[1] == ub.split("?")[1]
    assert b.verify(path, *[kv.split("=", 1)[1] for kv in ua.split("?")[1].split("&")])
    assert len(ua) < 400
    assert not UrlSigner(b"x" * 32, "https://a.example").verify(path, str(exp), ua.rsplit("=", 1)[1])


async def test_compressible_payload_has_a_gzip_sidecar_served_only_on_request(client):
    import gzip

    text = b"log line that repeats and compresses well\n" * 5000
    await upload_release(client, text, version="3.0.0", software_type="txt", hardware_version="hw1", name="a.txt")
    await deploy(client, "3.0.0")
    r = await client.get("/api/v0/releases/latest/url", params={
        "device_serial": "GZ1", "hardware_version": "hw1", "software_type": "txt"},
        headers={"Memfault-Project-Key": PROJECT_KEY})
    path = (await r.text()).split("gw.test:8080", 1)[1]
    plain = await client.get(path, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and await plain.read() == text
    r = await client.get(path, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert r.headers["Content-Encoding"] == "gzip" and r.headers["Vary"] == "Accept-Encoding"
    body = await r.read()
    assert len(body) < len(text) / 10 and int(r.headers["Content-Length"]) == len(body)
    assert gzip.decompress(body) == text
    # ranges always address the identity bytes
    r = await client.get(path, headers={"Accept-Encoding": "gzip", "Range": "bytes=0-9"}, auto_decompress=False)
    assert r.status == 206 and await r.read() == text[:10] and "Content-Encoding" not in r.headers


async def test_accel_redirect_hands_the_bytes_to_the_front_proxy(client, url):
    from gateway.appkeys import SETTINGS

    settings = client.server.app[SETTINGS]
    settings.accel_redirect = "/_artifacts/"
    try:
        r = await client.get(url)
        sha = hashlib.sha256(CONTENT).hexdigest()
        assert r.status == 200 and await r.read() == b""
        assert r.headers["X-Accel-Redirect"] == f"/_artifacts/{sha[:2]}/{sha}"
        assert r.headers["ETag"] == f'"{sha}"'
        path, query = url.split("?")
        assert (await client.get(path + "?e=1&s=x")).status == 403  # the gateway still checks the signature
    finally:
        settings.accel_redirect = None


def test_partial_uploads_left_by_a_crash_are_removed_at_start(tmp_path):
    from gateway.api.artifacts import BlobStore

    (tmp_path / "tmp").mkdir()
    stale, fresh = tmp_path / "tmp" / "upload-stale", tmp_path / "tmp" / "upload-fresh"
    stale.write_bytes(b"half a firmware")
    fresh.write_bytes(b"being written")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    store = BlobStore(tmp_path)
    assert not stale.exists() and fresh.exists()
    assert list(tmp_path.glob("??/*")) == []  # nothing half-written is visible as a blob
    assert store.remove_stale(0) == 1 and not fresh.exists()
