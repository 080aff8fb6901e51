"""Bad input gets a 4xx with a JSON error naming the problem, and nothing is partly written:
oversized bodies, wrong content types, invalid UTF-8 and NUL, huge URLs and headers, `..` and
absolute file names, bad ranges, malformed credentials and signed-URL parameters."""
from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest
from conftest import PROJECT, PROJECT_KEY, P, auth_headers, deploy, upload_release
from yarl import URL

from gateway.appkeys import CHECKINS, MIRROR, POOL

A = auth_headers()
KEY = {"Memfault-Project-Key": PROJECT_KEY}
POLL = {"device_serial": "BAD1", "hardware_version": "bad-hw", "software_type": "bad"}
CONTENT = bytes(range(256)) * 40


async def error_of(r, status: int, *words: str) -> dict:
    """Assert a JSON error with `status` whose message contains every word."""
    assert r.status == status, (r.status, await r.text())
    assert r.content_type == "application/json"
    err = (await r.json())["error"]
    assert err["type"] and all(w.lower() in err["message"].lower() for w in words), err
    return err


async def counts(client) -> tuple[int, int, int]:
    """Rows that a bad write must not have added: cohorts, releases, audit entries."""
    pool = client.server.app[POOL]
    return (await pool.fetchval("SELECT count(*) FROM cohorts"), await pool.fetchval("SELECT count(*) FROM releases"),
            await pool.fetchval("SELECT count(*) FROM audit_log"))


@pytest.fixture
async def released(client):
    if not any(r.version == "1.0.0" for r in client.server.app[MIRROR].by_slug[PROJECT].releases.values()):
        await upload_release(client, CONTENT, version="1.0.0", software_type="bad", hardware_version="bad-hw",
                             name="fw.bin")
        await deploy(client, "1.0.0")
    return client


async def raw_request(client, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (no client-side encoding) and read the status line and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(1 << 16), 10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# -- bodies --------------------------------------------------------------------------------------------------

async def test_oversized_json_body_is_413_and_writes_nothing(client):
    before = await counts(client)
    body = b'{"slug": "big", "name": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    r = await client.post(P + "/cohorts", data=body, headers={**A, "Content-Type": "application/json"})
    await error_of(r, 413, "too large", "1048576")
    assert await counts(client) == before


async def test_upload_past_its_own_limit_is_413_and_stays_pending(aiohttp_client, settings):
    from gateway.app import init_app

    settings.max_upload_size = 1000
    client = await aiohttp_client(init_app(settings))
    up = (await (await client.post(P + "/upload", json={}, headers=A)).json())["data"]
    path = up["upload_url"].split("gw.test:8080", 1)[1]

    async def chunks():  # no Content-Length: the limit must hold while streaming
        for _ in range(4):
            yield b"x" * 400

    await error_of(await client.put(path, data=chunks()), 413, "too big", "1000")
    row = await client.server.app[POOL].fetchrow("SELECT status, sha256 FROM uploads WHERE token = $1", up["token"])
    assert row["status"] == "pending" and row["sha256"] is None


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "application/xml",
                                   "multipart/form-data; boundary=x"])
async def test_json_endpoints_refuse_other_media_types(client, ctype):
    before = await counts(client)
    r = await client.post(P + "/cohorts", data=b'{"slug": "ctype"}', headers={**A, "Content-Type": ctype})
    await error_of(r, 415, "application/json", ctype.split(";")[0])
    assert await counts(client) == before
    # JSON flavours are fine
    r = await client.patch(P + "/cohorts/default", data=b'{"name": "Default"}',
                           headers={**A, "Content-Type": "application/merge-patch+json"})
    assert r.status == 200


async def test_invalid_utf8_and_nul_in_bodies(client):
    before = await counts(client)
    bad = [(b'{"slug": "caf\xe9"}', "UTF-8"), (b'{"slug": "a", "name": "x\\u0000y"}', "NUL"),
           (b'{"slug": "\\ud800"}', "JSON"), (b'[1, 2]', "object"), (b'{"a":' * 40 + b"1" + b"}" * 40, "nested")]
    for raw, word in bad:
        r = await client.post(P + "/cohorts", data=raw, headers={**A, "Content-Type": "application/json"})
        await error_of(r, 400, word)
    r = await client.post(P + "/cohorts", json={"slug": "ctl", "name": "tab\there"}, headers=A)
    await error_of(r, 400, "name", "control characters")
    assert await counts(client) == before


# -- URLs: query strings, path parameters, sizes ------------------------------------------------------------

async def test_invalid_utf8_in_query_strings(released):
    for url in (P + "/devices?cohort=%FF%FE", "/api/v0/releases/latest?device_serial=BAD1&hardware_version=%C3"
                                               "&software_type=bad"):
        r = await released.get(URL(url, encoded=True), headers={**A, **KEY})
        await error_of(r, 400, "UTF-8")


async def test_nul_and_out_of_range_values_in_queries_are_400(released):
    await error_of(await released.get(P + "/devices", params={"cohort": "a\x00b"}, headers=A), 400, "invalid value")
    await error_of(await released.get(P + "/devices", params={"per_page": "-5"}, headers=A), 400, "per_page")
    await error_of(await released.get(P + "/devices", params={"page": str(10**30)}, headers=A), 400, "invalid value")
    await error_of(await released.get(P + "/audit-log", params={"before": str(10**25)}, headers=A), 400)
    r = await released.get("/api/v0/releases/latest", params={**POLL, "current_version": "1.0\x00"}, headers=KEY)
    await error_of(r, 400, "current_version")
    r = await released.get("/api/v0/releases/latest", params={**POLL, "current_version": "9" * 300}, headers=KEY)
    await error_of(r, 400, "current_version")


async def test_path_parameters_with_control_characters_or_unicode_digits(released):
    await error_of(await released.get(P + "/devices/a%00b", headers=A), 400, "serial", "control")
    await error_of(await released.delete(P + "/deployments/%C2%B2", headers=A), 404)  # "²".isdigit() is True
    await error_of(await released.get(P + "/releases/%C2%B2", headers=A), 404)
    await error_of(await released.delete(P + "/deployments/" + "9" * 30, headers=A), 400, "invalid value")
    ddi = f"/{PROJECT}/controller/v1/BAD2"
    gw = {"Authorization": f"GatewayToken {PROJECT_KEY}"}
    await error_of(await released.get(ddi + "/deploymentBase/%D9%A3", headers=gw), 404)
    await error_of(await released.get(ddi + "/deploymentBase/" + "9" * 30, headers=gw), 400, "actionId")
    await error_of(await released.get(ddi + "/softwaremodules/%C2%B2/artifacts", headers=gw), 404)


async def test_huge_query_strings_and_headers(released):
    r = await released.get("/api/v0/releases/latest", params={**POLL, "x": "y" * 5000}, headers=KEY)
    await error_of(r, 414, "longer than 4096")
    # long request lines and big or many headers get a JSON error too (the parser's own limits,
    # whose answers are plain text, sit further out), and the process goes on serving
    status, body = await raw_request(released, b"GET /healthz?" + b"q" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 414 and b"longer than 4096" in body
    status, body = await raw_request(released, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 20000
                                     + b"\r\n\r\n")
    assert status == 431 and b"header fields are too large" in body
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(500))
    status, body = await raw_request(released, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert status == 431 and b"header_fields_too_large" in body
    assert (await released.get("/healthz")).status == 200


# -- file names -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "..", ".", "a/b.bin", "fw\x00.bin", "fw\n.bin",
                                  "x" * 300])
async def test_upload_file_names_with_paths_are_refused(client, name):
    up = (await (await client.post(P + "/upload", json={}, headers=A)).json())["data"]
    assert (await client.put(up["upload_url"].split("gw.test:8080", 1)[1], data=b"named")).status == 200
    before = await counts(client)
    r = await client.post(P + "/releases/ota_payload", headers=A, json={
        "file": {"token": up["token"], "md5": hashlib.md5(b"named").hexdigest(), "name": name},
        "software_version": {"version": "7.7.7", "software_type": "names"}, "hardware_version": "names-hw"})
    await error_of(r, 400, "file.name")
    assert await counts(client) == before


async def test_download_paths_with_dot_segments_or_absolute_names(released):
    r = await released.get("/api/v0/releases/latest/url", params=POLL, headers=KEY)
    url = (await r.text()).split("gw.test:8080", 1)[1]
    path, query = url.split("?")
    payload = path.split("/")[2]
    for tampered in (f"/dl/{payload}/..%2F..%2Fetc%2Fpasswd", f"/dl/{payload}/%2Fetc%2Fpasswd",
                     f"/dl/{payload}/%2e%2e", f"/dl/..%2F{payload}/fw.bin"):
        r = await released.get(URL(f"{tampered}?{query}", encoded=True))
        await error_of(r, 403, "signature")
    gw = {"Authorization": f"GatewayToken {PROJECT_KEY}"}
    ddi = f"/{PROJECT}/controller/v1/BAD3/softwaremodules/{payload}/artifacts"
    for name in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "fw.bin%00"):
        r = await released.get(URL(f"{ddi}/{name}", encoded=True), headers=gw)
        assert 400 <= r.status < 500 and r.status != 401, r.status
        assert (await r.json())["error"]["message"]


# -- ranges ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("header, word", [
    ("bytes=-5-3", "malformed"), ("bytes=5--3", "malformed"), ("bytes=--1", "malformed"),
    ("bytes=20-10", "before the first"),
    ("bytes=abc", "malformed"), ("bytes=", "malformed"), ("bytes=\u00b2-3", "malformed"),
    ("bytes=99999999-", "not satisfiable"), ("bytes=1" + "0" * 30 + "-", "malformed")])
async def test_bad_ranges_are_416_json(released, header, word):
    # (several ranges, overlapping or many, are satisfiable: they get the whole body, see test_artifacts)
    r = await released.get("/api/v0/releases/latest/url", params=POLL, headers=KEY)
    url = (await r.text()).split("gw.test:8080", 1)[1]
    r = await released.get(url, headers={"Range": header})
    await error_of(r, 416, word)
    assert r.headers["Content-Range"] == f"bytes */{len(CONTENT)}"


# -- credentials ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("header, status", [
    ("Bearer", 401), ("Bearer ", 401), ("Basic !!!notbase64", 401), ("Token abc", 401),
    ("Basic " + base64.b64encode(b"\xff\xfe:secret").decode(), 401),  # credentials that are not UTF-8
    ("Basic " + base64.b64encode(b"a\x00b@x:secret").decode(), 400),  # NUL: no database text can hold it
    ("Bearer oat_\xff\xfe", 401),  # header bytes that are not UTF-8
])
async def test_malformed_authorization_headers(client, header, status):
    r = await client.get(P, headers={"Authorization": header})
    await error_of(r, status)


async def test_malformed_project_keys_and_ddi_tokens(released):
    for key in ("", " ", "\xff\xfe", "k" * 5000, PROJECT_KEY + "\xe9"):
        r = await released.get("/api/v0/releases/latest", params=POLL, headers={"Memfault-Project-Key": key})
        await error_of(r, 403, "Memfault-Project-Key")
    for auth in ("GatewayToken", "GatewayToken \xff\xfe", "TargetToken \xff", "gatewaytoken " + PROJECT_KEY,
                 "GatewayToken " + PROJECT_KEY + "\xe9"):
        r = await released.get(f"/{PROJECT}/controller/v1/BAD4", headers={"Authorization": auth})
        assert r.status == 401 and await r.read() == b""  # hawkBit's bare 401, by design


@pytest.mark.parametrize("e, s", [("\u00b2", "x"), ("1" * 1000, "x"), ("-1", "x"), ("", ""), (None, None),
                                  ("9999999999", "\u00e9\u00e9"), ("9999999999", "a" * 1000)])
async def test_malformed_signed_url_parameters(released, e, s):
    r = await released.get("/api/v0/releases/latest/url", params=POLL, headers=KEY)
    path = (await r.text()).split("gw.test:8080", 1)[1].split("?")[0]
    params = {k: v for k, v in (("e", e), ("s", s)) if v is not None}
    await error_of(await released.get(path, params=params), 403, "signature")
    up = (await (await released.post(P + "/upload", json={}, headers=A)).json())["data"]
    await error_of(await released.put(up["upload_url"].split("gw.test:8080", 1)[1].split("?")[0], params=params,
                                      data=b"x"), 403, "signature")


async def test_a_serial_with_a_trailing_newline_is_refused_everywhere(released):
    """A line end after a valid serial (%0A) must not slip past the serial pattern and create a device."""
    r = await released.get("/api/v0/releases/latest", params={**POLL, "device_serial": "NL1\n"}, headers=KEY)
    await error_of(r, 400, "device_serial")
    gw = {"Authorization": f"GatewayToken {PROJECT_KEY}"}
    await error_of(await released.get(f"/{PROJECT}/controller/v1/NL2%0A", headers=gw), 400, "controllerId")
    r = await released.post(P + "/devices", json={"device_serial": "NL3\n", "hardware_version": "bad-hw"}, headers=A)
    await error_of(r, 400, "device_serial")
    await released.server.app[CHECKINS].flush()
    assert await released.server.app[POOL].fetchval("SELECT count(*) FROM devices WHERE serial LIKE 'NL%'") == 0
