"""Previews ("dry_run") of changes: the version-matrix difference a change would make, nothing
changed by asking, and a token that applies exactly the previewed change or answers 409."""
from __future__ import annotations

from collections import Counter, defaultdict

from conftest import P, PROJECT, PROJECT_KEY, auth_headers, deploy, upload_release

from gateway.appkeys import POOL

LATEST = "/api/v0/releases/latest"
KEY = {"Memfault-Project-Key": PROJECT_KEY}
N = 10_000
VERSIONS = ["1.0.0", "1.0.0", "1.0.0", "2.0.0", "0.9.0"]  # what the cohort's devices run, by serial number


async def fleet(client, slug: str, n: int) -> dict[str, str]:
    """A cohort of `n` devices (hardware mp) with their current versions, written at once."""
    r = await client.post(P + "/cohorts", json={"slug": slug, "name": slug}, headers=auth_headers())
    assert r.status == 201, await r.text()
    pool = client.server.app[POOL]
    pid = await pool.fetchval("SELECT id FROM projects WHERE slug = $1", PROJECT)
    cid = await pool.fetchval("SELECT id FROM cohorts WHERE project_id = $1 AND slug = $2", pid, slug)
    serials = [f"{slug.upper()}{i:05d}" for i in range(n)]
    versions = [VERSIONS[i % len(VERSIONS)] for i in range(n)]
    await pool.execute(
        "WITH d AS (INSERT INTO devices (project_id, serial, hardware_version, cohort_id) "
        "  SELECT $1, s, 'mp', $2 FROM unnest($3::text[]) s RETURNING id, serial) "
        "INSERT INTO device_software (device_id, software_type, version) "
        "SELECT d.id, 'main', v.version FROM d JOIN unnest($3::text[], $4::text[]) AS v(serial, version) "
        "ON v.serial = d.serial", pid, cid, serials, versions)
    return dict(zip(serials, versions))


async def answers(client, devices: dict[str, str]) -> dict[tuple, Counter]:
    """(hardware, current version) -> Counter(next version or "(no update)"), polled like devices."""
    out: dict[tuple, Counter] = defaultdict(Counter)
    for serial, current in devices.items():
        r = await client.get(LATEST, params={"device_serial": serial, "hardware_version": "mp",
                                             "software_type": "main", "current_version": current}, headers=KEY)
        out[("mp", current)][(await r.json())["version"] if r.status == 200 else "(no update)"] += 1
    return out


async def post(client, path, body, expect=200):
    r = await client.post(P + path, json=body, headers=auth_headers())
    assert r.status == expect, await r.text()
    return (await r.json())["data"]


async def test_preview_of_a_staged_rollout_is_what_devices_get(client):
    devices = await fleet(client, "big", N)
    await upload_release(client, b"p1" * 400, version="1.0.0", software_type="main", hardware_version="mp")
    await upload_release(client, b"p2" * 500, version="2.0.0", software_type="main", hardware_version="mp")
    await upload_release(client, b"p3" * 600, version="3.0.0", software_type="main", hardware_version="mp")
    for v in ("1.0.0", "2.0.0"):
        await deploy(client, v, cohort="big")
    before = await answers(client, devices)
    change = {"type": "staged_rollout", "release": "3.0.0", "cohort": "big", "rollout_percent": 20}
    pv = await post(client, "/deployments", {**change, "dry_run": True})
    assert pv["dry_run"] is True and pv["would_need_approval"] is False
    # nothing changed by asking
    assert await answers(client, devices) == before
    r = await client.get(P + "/deployments", params={"cohort": "big"}, headers=auth_headers())
    assert {d["release"]["version"] for d in (await r.json())["data"]} == {"1.0.0", "2.0.0"}
    # 20 % of the cohort moves to 3.0.0: 2,000 devices, each downloading 1,200 bytes
    rows = {(c["hardware_version"], c["current_version"]): c for c in pv["changes"] if c["cohort"] == "big"}
    assert pv["devices_moving"] == 2000 and pv["bytes"] == 2000 * 1200
    assert sum(c["to"]["3.0.0"]["devices"] for c in rows.values()) == 2000
    applied = await post(client, "/deployments", {**change, "preview_token": pv["preview_token"]}, expect=201)
    assert applied["staged_devices"] == 2000
    after = await answers(client, devices)
    for key, counts in after.items():
        expected = rows[key]["after"] if key in rows else dict(before[key])
        assert dict(counts) == expected, key


async def test_a_stale_token_is_refused_and_changes_nothing(client):
    devices = await fleet(client, "stale", 200)
    await upload_release(client, b"s4" * 300, version="4.0.0", software_type="main", hardware_version="mp")
    change = {"type": "staged_rollout", "release": "4.0.0", "cohort": "stale", "rollout_percent": 50}
    pv = await post(client, "/deployments", {**change, "dry_run": True})
    assert pv["devices_moving"] == 100
    # meanwhile the fleet changes: a device of the cohort moves away
    r = await client.patch(P + "/devices/STALE00000", json={"cohort": "default"}, headers=auth_headers())
    assert r.status == 200, await r.text()
    r = await client.post(P + "/deployments", json={**change, "preview_token": pv["preview_token"]},
                          headers=auth_headers())
    assert r.status == 409 and (await r.json())["error"]["type"] == "preview_outdated"
    devices.pop("STALE00000")
    assert all(v != "4.0.0" for c in (await answers(client, devices)).values() for v in c)
    # a new preview applies
    pv = await post(client, "/deployments", {**change, "dry_run": True})
    await post(client, "/deployments", {**change, "preview_token": pv["preview_token"]}, expect=201)


async def test_every_change_endpoint_previews(client):
    await fleet(client, "every", 50)
    await upload_release(client, b"e5" * 300, version="5.0.0", software_type="main", hardware_version="mp")
    dep = await deploy(client, "5.0.0", cohort="every")
    # abort
    r = await client.delete(P + f"/deployments/{dep['id']}", params={"dry_run": "true"}, headers=auth_headers())
    pv = (await r.json())["data"]
    assert r.status == 200 and pv["dry_run"] and pv["devices_moving"] == 0
    assert sum(c["before"].get("5.0.0", 0) for c in pv["changes"]) == 50
    # move, override, staging
    r = await client.patch(P + "/devices/EVERY00001", json={"cohort": "default", "dry_run": True},
                           headers=auth_headers())
    assert r.status == 200 and (await r.json())["data"]["dry_run"]
    r = await client.put(P + "/devices/EVERY00002/release-override", json={"release": "5.0.0", "dry_run": True},
                         headers=auth_headers())
    assert r.status == 200 and (await r.json())["data"]["dry_run"]
    # still as before: the deployment active, the device in its cohort
    r = await client.get(P + "/devices/EVERY00001", headers=auth_headers())
    assert (await r.json())["data"]["cohort"]["slug"] == "every"
    r = await client.get(P + "/deployments", params={"cohort": "every"}, headers=auth_headers())
    assert [d["active"] for d in (await r.json())["data"]] == [True]
    for bad in ({"dry_run": "yes"}, {"preview_token": 5}, {"dry_run": True, "preview_token": "x" * 32},
                {"preview_token": "not-a-token"}):
        r = await client.patch(P + "/devices/EVERY00001", json={"cohort": "default", **bad}, headers=auth_headers())
        message = (await r.json())["error"]["message"]
        assert r.status == 400 and ("dry_run" in message or "preview_token" in message), bad
