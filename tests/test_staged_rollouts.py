"""Staged rollouts over HTTP, polled like devices (issue "Rollouts, part 1"): one staged set per
activation, widening keeps, narrowing spares the devices that took the release, one staged
rollout per cohort and software type, devices joining later staged by hash when asked, and the
actual staged counts next to the configured percentage."""
from __future__ import annotations

import pytest
from conftest import P, PROJECT_KEY, auth_headers, deploy, upload_release

from gateway.appkeys import CHECKINS, POOL
from gateway.domain import staging

LATEST = "/api/v0/releases/latest"
KEY = {"Memfault-Project-Key": PROJECT_KEY}


async def poll(client, serial, current, sw="main"):
    r = await client.get(LATEST, params={"device_serial": serial, "hardware_version": "mp", "software_type": sw,
                                         "current_version": current}, headers=KEY)
    body = await r.json() if r.status == 200 else None
    return (body["version"] if body else None), (body["reason"] if body else r.headers.get("memfault-reason"))


async def cohort_of(client, slug, n, prefix):
    r = await client.post(P + "/cohorts", json={"slug": slug, "name": slug}, headers=auth_headers())
    assert r.status == 201, await r.text()
    for i in range(n):
        r = await client.post(P + "/devices", json={"device_serial": f"{prefix}{i:03d}", "hardware_version": "mp",
                                                    "cohort": slug}, headers=auth_headers())
        assert r.status == 201, await r.text()
    return [f"{prefix}{i:03d}" for i in range(n)]


async def offered(client, serials, current, version, sw="main"):
    """The serials a poll offers `version` to."""
    return {s for s in serials if (await poll(client, s, current, sw))[0] == version}


async def test_widening_keeps_and_narrowing_spares_takers(client):
    serials = await cohort_of(client, "wide", 100, "WD")
    await upload_release(client, b"w1" * 300, version="1.0.0", software_type="main", hardware_version="mp")
    await upload_release(client, b"w2" * 300, version="2.0.0", software_type="main", hardware_version="mp")
    await deploy(client, "1.0.0", cohort="wide")
    dep = await deploy(client, "2.0.0", cohort="wide", percent=10)
    assert (dep["rollout_percent"], dep["staged_devices"], dep["cohort_devices"], dep["staged_fraction"]) == (
        10, 10, 100, 0.1)
    first = await offered(client, serials, "1.0.0", "2.0.0")
    assert len(first) == 10
    dep = await deploy(client, "2.0.0", cohort="wide", percent=30)
    assert dep["id"] and dep["staged_devices"] == 30
    second = await offered(client, serials, "1.0.0", "2.0.0")
    assert len(second) == 30 and first <= second  # the first 10 are among the 30
    # 15 staged devices take it (one of the first ten among them) and report 2.0.0
    takers = sorted(second - first)[:14] + sorted(first)[:1]
    for s in takers:
        assert await poll(client, s, "2.0.0") == (None, "latest")
    await client.server.app[CHECKINS].flush()
    # back to 10 %: only devices that have not taken it are unstaged, so 15 stay
    dep = await deploy(client, "2.0.0", cohort="wide", percent=10)
    assert dep["staged_devices"] == 15 and dep["rollout_percent"] == 10
    r = await client.get(P + "/devices", params={"cohort": "wide", "per_page": 200}, headers=auth_headers())
    staged_now = {d["device_serial"] for d in (await r.json())["data"] if d["staged"]}
    assert staged_now == set(takers)
    assert await offered(client, serials, "1.0.0", "2.0.0") == set(takers)
    # the version matrix tells the same
    r = await client.get(P + "/cohorts/wide/version-matrix", params={"software_type": "main"}, headers=auth_headers())
    m = (await r.json())["data"]
    assert (m["staged_devices"], m["devices"], m["staged_fraction"]) == (15, 100, 0.15)


async def test_one_staged_rollout_per_cohort_and_software_type(client):
    serials = await cohort_of(client, "one", 51, "ON")
    await upload_release(client, b"o3" * 300, version="3.0.0", software_type="main", hardware_version="mp")
    await upload_release(client, b"o4" * 300, version="4.0.0", software_type="main", hardware_version="mp")
    first = await deploy(client, "3.0.0", cohort="one", percent=40)
    r = await client.post(P + "/deployments", json={"type": "staged_rollout", "release": "4.0.0", "cohort": "one",
                                                    "rollout_percent": 10}, headers=auth_headers())
    assert r.status == 409
    err = (await r.json())["error"]
    assert "3.0.0" in err["message"] and str(first["id"]) in err["message"]
    # aborted, the next staged rollout draws its own set: exactly round(51 x 10 %) get it
    r = await client.delete(P + f"/deployments/{first['id']}", headers=auth_headers())
    assert r.status == 200, await r.text()
    dep = await deploy(client, "4.0.0", cohort="one", percent=10)
    assert dep["staged_devices"] == 5
    assert len(await offered(client, serials, "2.0.0", "4.0.0")) == 5


async def test_staged_per_software_type(client):
    """A device running two software types is staged for each rollout on its own."""
    serials = await cohort_of(client, "two", 20, "TW")
    await upload_release(client, b"m5" * 300, version="5.0.0", software_type="main", hardware_version="mp")
    await upload_release(client, b"b5" * 300, version="5.0.0", software_type="boot", hardware_version="mp")
    for sw, percent in (("main", 50), ("boot", 0)):  # two releases 5.0.0: the type is named
        r = await client.post(P + "/deployments", json={"type": "staged_rollout", "release": "5.0.0",
                                                        "cohort": "two", "rollout_percent": percent,
                                                        "software_type": sw}, headers=auth_headers())
        assert r.status == 201, await r.text()
    assert len(await offered(client, serials, "1.0.0", "5.0.0", "main")) == 10
    assert await offered(client, serials, "1.0.0", "5.0.0", "boot") == set()


@pytest.mark.parametrize("salt,serial", [(1, "A"), (4611686018427387903, "SN-0001"), (77, "x" * 128)])
async def test_stage_hash_is_the_same_in_the_database(client, salt, serial):
    got = await client.server.app[POOL].fetchval("SELECT stage_hash($1, $2)", salt, serial)
    assert got == staging.stage_hash(salt, serial)


async def test_newcomers_staged_by_hash_when_asked(client):
    await cohort_of(client, "late", 40, "LT")
    await upload_release(client, b"l6" * 300, version="6.0.0", software_type="main", hardware_version="mp")
    r = await client.post(P + "/deployments", json={"type": "staged_rollout", "release": "6.0.0", "cohort": "late",
                                                    "rollout_percent": 30, "stage_newcomers": True},
                          headers=auth_headers())
    dep = (await r.json())["data"]
    assert r.status == 201 and dep["stage_newcomers"] is True and dep["staged_devices"] == 12
    salt = await client.server.app[POOL].fetchval("SELECT stage_salt FROM activations WHERE id = $1", dep["id"])
    threshold = staging.newcomer_threshold(30)
    newcomers = [f"LTNEW{i:03d}" for i in range(60)]
    for s in newcomers:  # they join the cohort after the draw
        r = await client.post(P + "/devices", json={"device_serial": s, "hardware_version": "mp", "cohort": "late"},
                              headers=auth_headers())
        assert r.status == 201
    expected = {s for s in newcomers if staging.stage_hash(salt, s) < threshold}
    assert 0 < len(expected) < len(newcomers)
    assert await offered(client, newcomers, "1.0.0", "6.0.0") == expected
    r = await client.get(P + "/deployments", params={"cohort": "late"}, headers=auth_headers())
    listed = next(d for d in (await r.json())["data"] if d["id"] == dep["id"])
    assert listed["staged_devices"] == 12 + len(expected) and listed["cohort_devices"] == 100


@pytest.mark.parametrize("devices,percent,want", [(0, 50, 0), (100, 10, 10), (51, 10, 5), (5, 50, 3), (3, 50, 2),
                                                  (1, 49, 0), (1, 50, 1), (1000, 99, 990)])
def test_target_count_rounds_half_up(devices, percent, want):
    assert staging.target_count(devices, percent) == want


@pytest.mark.parametrize("staged,devices,percent,takers,change", [
    (10, 100, 30, 0, (20, 0)),    # widen: add up to round(N x p)
    (30, 100, 30, 0, (0, 0)),     # unchanged
    (30, 100, 10, 0, (0, 20)),    # narrow: take back the surplus
    (30, 100, 10, 15, (0, 15)),   # ... but never below the takers
    (30, 100, 10, 30, (0, 0)),    # all took it: nothing to take back
    (12, 110, 10, 0, (0, 1)),     # devices left the cohort: round(110 x 10 %) = 11
])
def test_plan_change(staged, devices, percent, takers, change):
    assert staging.plan_change(staged, devices, percent, takers) == change


def test_newcomer_threshold_splits_the_hash_range():
    assert staging.newcomer_threshold(0) == -(1 << 63)
    assert staging.newcomer_threshold(50) == 0
    hits = sum(staging.stage_hash(9, f"D{i}") < staging.newcomer_threshold(25) for i in range(4000))
    assert 900 < hits < 1100  # uniform
    with pytest.raises(ValueError):
        staging.newcomer_threshold(100)
