"""Authentication before per-device work on every device route: a bad project key or GatewayToken
costs no database query, a bad TargetToken at most one index probe (and nothing when repeated),
no request that fails authentication gets a DDI device state cached, and a source that keeps
failing is answered 429 without database work. Plus the project switch `ddi_gateway_token`."""
from __future__ import annotations

import asyncio
import secrets

import pytest
from conftest import PROJECT, PROJECT_KEY, P, auth_headers, deploy, upload_release
from test_ddi import FW1, FW2, GW, _quiesce, base, config, poll

from gateway.appkeys import CHECKINS, MIRROR, POOL
from gateway.memory.auth_guard import (
    AUTH_FAILURES,
    FailureLimits,
    RejectedTokens,
    source_of,
)
from gateway.memory.ddi_cache import DDI_CACHE

LATEST = "/api/v0/releases/latest"
MEMFAULT_QUERY = {"device_serial": "AUTHQ1", "hardware_version": "evt", "software_type": "main"}


@pytest.fixture
async def released(client):
    """1.0.0 and 2.0.0 of software type `main` for hardware `evt`, active in the default cohort."""
    view = client.server.app[MIRROR].by_slug[PROJECT]
    if not any(r.version == "2.0.0" for r in view.releases.values()):
        for version, content in (("1.0.0", FW1), ("2.0.0", FW2)):
            await upload_release(client, content, version=version, name="image.swu")
            await deploy(client, version)
    return client


async def query_spy(app) -> list[str]:
    """Let the app's background work settle, then log every statement any pooled connection sends
    (all of them: the pool is filled first, so that none is opened unlogged later)."""
    await app[CHECKINS].set_interval(3600)  # keep the write-behind flush out of the measured window
    await app[CHECKINS].preload_done()
    await app[CHECKINS].flush()
    await _quiesce(app)
    pool = app[POOL]
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    for conn in held:
        await pool.release(conn)
    seen: list[str] = []
    for holder in pool._holders:
        holder._con.add_query_logger(lambda rec: seen.append(rec.query))
    return seen


def target(token: str) -> dict:
    return {"Authorization": f"TargetToken {token}"}


async def set_token(client, serial: str, token: str) -> None:
    """A registered device, up to date (its polls write nothing), with this TargetToken."""
    await config(client, serial, {"memfault__hardware_version": "evt", "memfault__software_type": "main",
                                  "memfault__current_version": "2.0.0"})
    r = await client.post(f"{P}/devices/{serial}/ddi/token", json={"token": token}, headers=auth_headers())
    assert r.status == 200, await r.text()


def device_routes(client, serial: str = "AUTHD1") -> list[tuple[str, str, dict | None]]:
    """(method, path, JSON body) of every DDI device route, on both roots."""
    pl = next(iter(client.server.app[MIRROR].by_slug[PROJECT].payloads.values()))
    out = []
    for root in ("", "/api/v0/hawkbit"):
        b = base(serial, root)
        feedback = {"id": 1, "status": {"execution": "closed", "result": {"finished": "success"}}}
        out += [("GET", b, None), ("GET", f"{b}/deploymentBase/1", None),
                ("POST", f"{b}/deploymentBase/1/feedback", feedback), ("GET", f"{b}/cancelAction/1", None),
                ("POST", f"{b}/cancelAction/1/feedback", feedback), ("GET", f"{b}/installedBase/1", None),
                ("PUT", f"{b}/configData", {"data": {"k": "v"}}),
                ("GET", f"{b}/softwaremodules/{pl.id}/artifacts", None),
                ("GET", f"{b}/softwaremodules/{pl.id}/artifacts/{pl.filename}", None),
                ("GET", f"{b}/softwaremodules/{pl.id}/artifacts/{pl.filename}.MD5SUM", None)]
    return out


async def test_junk_target_tokens_cost_one_index_probe_then_nothing_and_cache_no_state(released):
    app = released.server.app
    app[AUTH_FAILURES].limit = 10**9  # this test is about the cost per request (the limit: below)
    await set_token(released, "AUTHREAL1", "real-device-token-0001")
    cache = app[DDI_CACHE]
    seen = await query_spy(app)
    size, loads = len(cache), cache.loads
    junk = [(f"RND{secrets.token_hex(6)}", secrets.token_hex(16)) for _ in range(1000)]

    async def burst(pairs) -> list[int]:
        statuses = []
        for i in range(0, len(pairs), 50):  # concurrent, as a flood is
            rs = await asyncio.gather(*(released.get(base(s), headers=target(t)) for s, t in pairs[i:i + 50]))
            statuses += [r.status for r in rs]
        return statuses

    assert await burst(junk) == [401] * 1000
    assert 0 < len(seen) <= 1000
    assert not any("ddi_device_states" in q for q in seen)  # no device state was built
    assert len(cache) == size and cache.loads == loads
    seen.clear()
    assert await burst(junk) == [401] * 1000  # the same tokens again: remembered
    # a token no device has is refused for any serial; one of another device, for this one
    others = [(f"RND{secrets.token_hex(6)}", t) for _, t in junk[:100]] + [("AUTHOTHER", "real-device-token-0001")]
    assert await burst(others) == [401] * 101
    assert len(seen) <= 1 and len(cache) == size and cache.loads == loads
    seen.clear()
    assert await burst([("AUTHOTHER", "real-device-token-0001")] * 5) == [401] * 5
    assert seen == []


async def test_bad_target_token_of_a_real_device_then_its_own(released):
    app = released.server.app
    await set_token(released, "AUTHREAL2", "real-device-token-0002")
    cache = app[DDI_CACHE]
    seen = await query_spy(app)
    size, loads = len(cache), cache.loads
    for _ in range(3):
        r = await released.get(base("AUTHREAL2"), headers=target("not-the-token-0002"))
        assert r.status == 401
    assert len(seen) == 1 and "ddi_device_states" not in seen[0]
    assert len(cache) == size and cache.loads == loads
    seen.clear()
    # its own token: as before, the first poll loads the state once, the others are memory only
    for _ in range(3):
        await poll(released, "AUTHREAL2", headers=target("real-device-token-0002"))
    assert cache.loads == loads + 1 and len(cache) == size + 1
    assert sum("ddi_device_states" in q for q in seen) == 1
    seen.clear()
    r = await released.get(base("AUTHREAL2"), headers=target("not-the-token-0002"))  # checked in memory
    assert r.status == 401 and seen == []


async def test_a_rejected_token_works_once_it_is_set(released):
    """The rejection memory is voided by the management write that sets a token."""
    app = released.server.app
    await set_token(released, "AUTHREAL3", "old-device-token-0003")
    for _ in range(2):
        r = await released.get(base("AUTHREAL3"), headers=target("new-device-token-0003"))
        assert r.status == 401
    assert len(app[DDI_CACHE].rejected) >= 1
    r = await released.post(f"{P}/devices/AUTHREAL3/ddi/token", json={"token": "new-device-token-0003"},
                            headers=auth_headers())
    assert r.status == 200
    await poll(released, "AUTHREAL3", headers=target("new-device-token-0003"))


async def test_junk_keys_cost_no_query_on_any_device_route(released):
    app = released.server.app
    seen = await query_spy(app)
    cache = app[DDI_CACHE]
    size, loads = len(cache), cache.loads
    bad_auth = [{}, {"Authorization": "GatewayToken " + "f" * 32}, {"Authorization": "GatewayToken "},
                {"Authorization": f"Bearer {PROJECT_KEY}"}, {"Authorization": f"TargetToken {PROJECT_KEY}"}]
    for method, path, body in device_routes(released):
        for headers in bad_auth:
            if headers.get("Authorization", "").startswith("TargetToken"):  # a tenant that is no project
                path = path.replace(f"/{PROJECT}/", "/no-such-tenant/")
            r = await released.request(method, path, json=body, headers=headers)
            assert r.status == 401, (method, path, headers, r.status)
    for path in (LATEST, LATEST + "/url"):
        for headers in ({}, {"Memfault-Project-Key": "f" * 32}, {"Memfault-Project-Key": ""}):
            r = await released.get(path, params=MEMFAULT_QUERY, headers=headers)
            assert r.status == 403
    assert seen == [] and len(cache) == size and cache.loads == loads


async def test_a_source_past_the_failure_limit_gets_429_without_database_work(released):
    app = released.server.app
    await set_token(released, "AUTHLIM1", "limited-device-token1")
    await set_token(released, "AUTHLIM2", "limited-device-token2")
    await poll(released, "AUTHLIM1", headers=target("limited-device-token1"))  # its state is cached
    await poll(released, "AUTHLIM3")  # a GatewayToken device, cached too
    app[AUTH_FAILURES].limit = 3
    seen = await query_spy(app)
    for _ in range(3):
        r = await released.get(base(f"RND{secrets.token_hex(6)}"), headers=target(secrets.token_hex(16)))
        assert r.status == 401
    assert 0 < len(seen) <= 3
    seen.clear()
    refused = [released.get(base(f"RND{secrets.token_hex(6)}"), headers=target(secrets.token_hex(16))),
               released.get(base("AUTHLIM2"), headers=target("limited-device-token2")),  # would need the database
               released.get(base("AUTHLIM3"), headers={"Authorization": "GatewayToken " + "f" * 32}),
               released.get(LATEST, params=MEMFAULT_QUERY, headers={"Memfault-Project-Key": "f" * 32})]
    for r in [await req for req in refused]:
        assert r.status == 429
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert (await r.json())["error"]["type"] == "rate_limited"
    for method, path, body in device_routes(released, "AUTHLIM2"):
        r = await released.request(method, path, json=body, headers=target(secrets.token_hex(16)))
        assert r.status == 429
    assert seen == []
    # what memory can authenticate still works: the limit is on failing, not on polling
    await poll(released, "AUTHLIM1", headers=target("limited-device-token1"))
    await poll(released, "AUTHLIM3")
    assert seen == []


async def test_projects_can_refuse_the_project_key_as_gateway_token(released):
    r = await released.get(P, headers=auth_headers())
    assert (await r.json())["data"]["ddi_gateway_token"] is True
    await set_token(released, "AUTHGW1", "gateway-off-token-01")
    for bad in ("false", None, 0, 1, []):
        r = await released.patch(P, json={"ddi_gateway_token": bad}, headers=auth_headers())
        assert r.status == 400
        assert "ddi_gateway_token" in (await r.json())["error"]["message"]
    r = await released.patch(P, json={"ddi_gateway_token": False}, headers=auth_headers())
    assert r.status == 200 and (await r.json())["data"]["ddi_gateway_token"] is False
    try:
        assert released.server.app[MIRROR].by_slug[PROJECT].ddi_gateway_token is False
        for method, path, body in device_routes(released, "AUTHGW1"):
            r = await released.request(method, path, json=body, headers=GW)
            assert r.status == 401, (method, path)
        await poll(released, "AUTHGW1", headers=target("gateway-off-token-01"))
        await poll(released, "AUTHGW1", headers=target("gateway-off-token-01"), root="/api/v0/hawkbit")
        r = await released.get(LATEST, params=MEMFAULT_QUERY, headers={"Memfault-Project-Key": PROJECT_KEY})
        assert r.status in (200, 204)  # the Memfault API's project key is not a GatewayToken
    finally:
        r = await released.patch(P, json={"ddi_gateway_token": True}, headers=auth_headers())
        assert r.status == 200 and (await r.json())["data"]["ddi_gateway_token"] is True
    await poll(released, "AUTHGW1")


def test_failure_limits_are_bounded_and_expire():
    limits = FailureLimits(limit=2, window=60.0, max_sources=100)
    assert limits.failed("10.0.0.1", 0.0) is None and limits.failed("10.0.0.1", 1.0) is None
    assert limits.retry_after("10.0.0.1", 2.0) == 58 and limits.failed("10.0.0.1", 2.0) == 58
    for i in range(10_000):  # many sources: at most max_sources counted, the rest share one allowance
        limits.failed(f"10.1.{i // 256}.{i % 256}", 3.0)
    assert len(limits) <= 101
    assert limits.retry_after("10.9.9.9", 4.0) is not None and limits.retry_after("10.1.0.5", 4.0) is None
    assert limits.retry_after("10.0.0.1", 60.0) is None and len(limits) == 0  # the window turned
    assert source_of("2001:db8::1") == source_of("2001:db8::ffff:1") != source_of("2001:db8:0:1::1")
    assert source_of("::ffff:192.0.2.7") == "192.0.2.7" and source_of(None) == "?"


def test_rejected_tokens_are_bounded_expire_and_are_voided():
    rejected = RejectedTokens(max_entries=100, ttl=10.0)
    epoch = rejected.epoch(1)
    for i in range(1000):
        rejected.reject(1, f"h{i}", None, epoch, 0.0)
    assert len(rejected) == 100
    assert rejected.rejected(1, "h999", "ANY", 1.0) and not rejected.rejected(1, "h0", "ANY", 1.0)
    assert not rejected.rejected(2, "h999", "ANY", 1.0)  # per project
    assert not rejected.rejected(1, "h999", "ANY", 10.0)  # expired
    rejected.reject(1, "theirs", "SN1", epoch, 0.0)
    assert rejected.rejected(1, "theirs", "SN1", 1.0) and not rejected.rejected(1, "theirs", "SN2", 1.0)
    rejected.forget(1)  # a token was set in the project
    assert not rejected.rejected(1, "h998", "ANY", 1.0) and not rejected.rejected(1, "theirs", "SN1", 1.0)
    rejected.reject(1, "late", None, epoch, 1.0)  # looked up before the token was set: not kept
    assert not rejected.rejected(1, "late", "ANY", 2.0)
