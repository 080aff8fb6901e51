"""Artifact delivery from signed URLs: Range, HEAD, conditional requests, signatures."""
from __future__ import annotations

import hashlib
import os
import time

import pytest
from conftest import PROJECT_KEY, deploy, upload_release

from gateway.appkeys import SIGNER
from gateway.signing import UrlSigner

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
    assert r.headers["Accept-Ranges"] == "bytes" and r.headers.get("ETag")
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
    r = await client.get(url, headers={"Range": "bytes=200000-"})
    assert r.status == 416


async def test_conditional_requests(client, url):
    etag = (await client.head(url)).headers["ETag"]
    r = await client.get(url, headers={"If-None-Match": etag})
    assert r.status == 304 and await r.read() == b""
    r = await client.get(url, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert r.status == 206 and await r.read() == CONTENT[10:20]
    r = await client.get(url, headers={"Range": "bytes=10-19", "If-Range": '"stale"'})
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
