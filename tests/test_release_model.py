"""The whole release model over HTTP: staging, overrides, cohort settings, keys, roles,
approvals, history, inspect and the version matrix checked against real polls."""
from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest
from conftest import ORG, P, PROJECT_KEY, auth_headers, deploy, upload_release

from gateway.appkeys import CHECKINS

LATEST = "/api/v0/releases/latest"
O = f"/api/v0/organizations/{ORG}"


async def poll(client, serial, current, *, sw="main", hw="mp", key=PROJECT_KEY):
    params = {"device_serial": serial, "hardware_version": hw, "software_type": sw}
    if current:
        params["current_version"] = current
    r = await client.get(LATEST, params=params, headers={"Memfault-Project-Key": key})
    body = await r.json() if r.status == 200 else None
    return r.status, (body["version"] if body else None), (body["reason"] if body else r.headers.get("memfault-reason"))


async def make_token(client, role, *, protected=False):
    r = await client.post(O + "/tokens", json={"name": f"{role}-{random.random()}", "role": role,
                                               "can_activate_protected": protected}, headers=auth_headers())
    assert r.status == 201, await r.text()
    return (await r.json())["data"]["token"]


async def cohort(client, slug, **settings):
    r = await client.post(P + "/cohorts", json={"slug": slug, "name": slug}, headers=auth_headers())
    assert r.status == 201, await r.text()
    if settings:
        r = await client.patch(P + f"/cohorts/{slug}", json=settings, headers=auth_headers())
        assert r.status == 200, await r.text()


async def test_scenario_matrix_matches_what_devices_receive(client):
    """Full 1.0 and 2.0, Delta 2.0->2.1, then a staged Delta 2.1->2.2 at 10 %."""
    for v in ("1.0.0", "2.0.0"):
        await upload_release(client, f"full {v}".encode() * 200, version=v, software_type="main", hardware_version="mp")
    await upload_release(client, b"d21" * 100, version=["2.0.0", "2.1.0"], software_type="main", hardware_version="mp")
    await upload_release(client, b"d22" * 100, version=["2.1.0", "2.2.0"], software_type="main", hardware_version="mp")
    for rel in ("1.0.0", "2.0.0", ["2.0.0", "2.1.0"]):
        await deploy(client, rel, cohort="default")
    rng = random.Random(7)
    fleet = {f"SCN{i:03d}": rng.choice(["0.9.0", "1.0.0", "1.5.0", "2.0.0", "2.1.0", "2.1.0", "2.1.0", None])
             for i in range(300)}
    for serial, current in fleet.items():  # devices register themselves by polling
        await poll(client, serial, current)
    await client.server.app[CHECKINS].flush()
    dep = await deploy(client, ["2.1.0", "2.2.0"], cohort="default", percent=10)
    assert dep["status"] == "in_progress"
    r = await client.get(P + "/cohorts/default/version-matrix", params={"software_type": "main"},
                         headers=auth_headers())
    assert r.status == 200, await r.text()
    m = (await r.json())["data"]
    # what the devices actually get
    actual: dict[str, Counter] = defaultdict(Counter)
    for serial, current in fleet.items():
        status, version, _ = await poll(client, serial, current)
        actual[current or "(none reported)"][version if status == 200 else "(no update)"] += 1
    got = {row: {col: n for col, n in zip(m["columns"], cells) if n} for row, cells in zip(m["rows"], m["cells"])}
    assert got == {row: dict(c) for row, c in actual.items()}
    assert m["devices"] == 300 and m["staged_devices"] == 30  # round(300 x 10 %)
    assert got["2.1.0"].get("2.2.0", 0) > 0 or got["2.1.0"] == {"(no update)": sum(actual["2.1.0"].values())}
    assert m["target_version"] == "2.0.0"
    kinds = sorted((r["version"], r["kind"], r["staged"]) for r in m["active_releases"])
    assert kinds == [("1.0.0", "full", False), ("2.0.0", "full", False), ("2.1.0", "delta", False),
                     ("2.2.0", "delta", True)]
    # devices on 2.1.0 that are not staged are told why
    reasons = m["reasons"]
    assert set(reasons.get("2.1.0 -> (no update)", {})) <= {"not_staged"}


async def test_staging_is_exact_and_remarks(client):
    await cohort(client, "stg")
    for i in range(40):
        r = await client.post(P + "/devices", json={"device_serial": f"STG{i}", "hardware_version": "mp",
                                                    "cohort": "stg"}, headers=auth_headers())
        assert r.status == 201
    await upload_release(client, b"stg3" * 100, version="3.0.0", software_type="main", hardware_version="mp")
    await deploy(client, "3.0.0", cohort="stg", percent=25)
    staged = [s for s in (f"STG{i}" for i in range(40)) if (await poll(client, s, "2.0.0"))[0] == 200]
    assert len(staged) == 10
    await deploy(client, "3.0.0", cohort="stg", percent=50)
    staged2 = [s for s in (f"STG{i}" for i in range(40)) if (await poll(client, s, "2.0.0"))[0] == 200]
    assert len(staged2) == 20
    # manual: unstage two named devices, then stage 5 more of those not yet staged
    r = await client.post(P + "/cohorts/stg/staging", json={"staged": False, "serials": staged2[:2]},
                          headers=auth_headers())
    assert r.status == 200 and (await r.json())["data"]["staged"] == 18
    assert (await poll(client, staged2[0], "2.0.0"))[2] == "not_staged"
    r = await client.post(P + "/cohorts/stg/staging", json={"staged": True, "limit": 5}, headers=auth_headers())
    body = (await r.json())["data"]
    assert (body["changed"], body["staged"], body["devices"]) == (5, 23, 40)
    r = await client.post(P + "/cohorts/stg/staging", json={"staged": True, "serials": ["NOPE"]},
                          headers=auth_headers())
    assert r.status == 404 and "NOPE" in (await r.json())["error"]["message"]
    r = await client.post(P + "/cohorts/stg/staging", json={"staged": "yes"}, headers=auth_headers())
    assert r.status == 400 and "staged" in (await r.json())["error"]["message"]


async def test_filtered_staging_most_recently_seen_first(client):
    await cohort(client, "flt")
    for i in range(6):
        await client.post(P + "/devices", json={"device_serial": f"FLT{i}", "hardware_version": "mp",
                                                "cohort": "flt"}, headers=auth_headers())
    # devices report versions; FLT5 is polled last, so it is the most recently seen
    for i, v in enumerate(["1.2.0", "1.2.0", "1.1.0", "1.2.0", "1.2.0", "1.2.0"]):
        await poll(client, f"FLT{i}", v)
        await client.server.app[CHECKINS].flush()
    # staged membership belongs to a staged rollout: without one there is nothing to stage for
    r = await client.post(P + "/cohorts/flt/staging", json={"staged": True, "limit": 2}, headers=auth_headers())
    assert r.status == 409 and "no staged rollout" in (await r.json())["error"]["message"]
    await upload_release(client, b"flt5" * 100, version="5.0.0", software_type="main", hardware_version="mp")
    await deploy(client, "5.0.0", cohort="flt", percent=0)
    r = await client.post(P + "/cohorts/flt/staging", json={"staged": True, "current_version": "1.2.0",
                                                            "software_type": "main", "limit": 2},
                          headers=auth_headers())
    assert (await r.json())["data"]["changed"] == 2
    r = await client.get(P + "/devices", params={"cohort": "flt"}, headers=auth_headers())
    staged = sorted(d["device_serial"] for d in (await r.json())["data"] if d["staged"])
    assert staged == ["FLT4", "FLT5"]


async def test_override_rules(client):
    await upload_release(client, b"o1" * 100, version="1.0.0", software_type="ovr", hardware_version="mp")
    await upload_release(client, b"o2" * 100, version="2.0.0", software_type="ovr", hardware_version="mp")
    await upload_release(client, b"o3" * 100, version="3.0.0", software_type="ovr", hardware_version="evt")
    r = await client.post(P + "/deployments", json={"release": "2.0.0", "cohort": "default", "software_type": "ovr"},
                          headers=auth_headers())
    assert r.status == 201
    await client.post(P + "/devices", json={"device_serial": "OVR1", "hardware_version": "mp"}, headers=auth_headers())
    assert await poll(client, "OVR1", "2.0.0", sw="ovr") == (204, None, "latest")
    r = await client.put(P + "/devices/OVR1/release-override", json={"release": "1.0.0", "software_type": "ovr"},
                         headers=auth_headers())
    assert r.status == 200
    assert await poll(client, "OVR1", "2.0.0", sw="ovr") == (200, "1.0.0", "override")  # a downgrade
    assert await poll(client, "OVR1", "1.0.0", sw="ovr") == (204, None, "latest")  # never its current version
    r = await client.put(P + "/devices/OVR1/release-override", json={"release": "3.0.0", "software_type": "ovr"},
                         headers=auth_headers())
    assert await poll(client, "OVR1", "2.0.0", sw="ovr") == (204, None, "no_release_for_hardware")
    r = await client.delete(P + "/devices/OVR1/release-override", headers=auth_headers())
    assert r.status == 200 and (await r.json())["data"]["release_override_id"] is None
    assert await poll(client, "OVR1", "1.0.0", sw="ovr") == (200, "2.0.0", "full")
    r = await client.put(P + "/devices/OVR1/release-override", json={"release": "9.9.9"}, headers=auth_headers())
    assert r.status == 404


async def test_version_checking_disabled_downgrades_to_target(client):
    await cohort(client, "nvc")
    await client.post(P + "/devices", json={"device_serial": "NVC1", "hardware_version": "mp", "cohort": "nvc"},
                      headers=auth_headers())
    r = await client.post(P + "/deployments", json={"release": "1.0.0", "cohort": "nvc", "software_type": "ovr"},
                          headers=auth_headers())
    assert r.status == 201
    assert await poll(client, "NVC1", "5.0.0", sw="ovr") == (204, None, "latest")
    r = await client.patch(P + "/cohorts/nvc", json={"version_checking": False}, headers=auth_headers())
    assert r.status == 200 and (await r.json())["data"]["version_checking"] is False
    assert await poll(client, "NVC1", "5.0.0", sw="ovr") == (200, "1.0.0", "cohort_settings")
    assert await poll(client, "NVC1", "1.0.0", sw="ovr") == (204, None, "latest")


@pytest.mark.parametrize("body, field", [
    ({"version_checking": "no"}, "version_checking"),
    ({"ddi_polling_interval": 1}, "ddi_polling_interval"),
    ({"ddi_update_type": "soft"}, "ddi_update_type"),
    ({"bogus": 1}, "bogus"),
])
async def test_cohort_settings_validation(client, body, field):
    r = await client.patch(P + "/cohorts/default", json=body, headers=auth_headers())
    assert r.status == 400 and field in (await r.json())["error"]["message"]


async def test_project_keys_with_cohort_override(client):
    await cohort(client, "recovery")
    await upload_release(client, b"rec" * 100, version="0.5.0", software_type="keyfw", hardware_version="mp")
    await upload_release(client, b"nrm" * 100, version="1.5.0", software_type="keyfw", hardware_version="mp")
    await deploy(client, "0.5.0", cohort="recovery")
    await deploy(client, "1.5.0", cohort="default")
    r = await client.post(P + "/project-keys", json={"name": "recovery", "cohort_override": "recovery"},
                          headers=auth_headers())
    assert r.status == 201
    created = (await r.json())["data"]
    key = created["key"]
    assert await poll(client, "KEY1", "0.1.0", sw="keyfw") == (200, "1.5.0", "full")
    assert await poll(client, "KEY1", "0.1.0", sw="keyfw", key=key) == (200, "0.5.0", "full")
    listed = (await (await client.get(P + "/project-keys", headers=auth_headers())).json())["data"]
    assert any(k["id"] == created["id"] and k["cohort_override"] == "recovery" and "key" not in k for k in listed)
    r = await client.delete(P + f"/project-keys/{created['id']}", headers=auth_headers())
    assert r.status == 204
    assert (await poll(client, "KEY1", "0.1.0", sw="keyfw", key=key))[0] == 403
    r = await client.post(P + "/project-keys", json={"cohort_override": "nope"}, headers=auth_headers())
    assert r.status == 400 and "cohort_override" in (await r.json())["error"]["message"]


async def test_roles_and_protected_cohorts(client):
    viewer, editor = await make_token(client, "viewer"), await make_token(client, "editor")
    flagged = await make_token(client, "editor", protected=True)
    await cohort(client, "prod", protected=True)
    assert (await client.get(P + "/releases", headers=auth_headers(viewer))).status == 200
    r = await client.post(P + "/deployments", json={"release": "1.5.0", "cohort": "default"},
                          headers=auth_headers(viewer))
    assert r.status == 403
    r = await client.post(P + "/deployments", json={"release": "1.5.0", "cohort": "prod"},
                          headers=auth_headers(editor))
    assert r.status == 403 and "protected" in (await r.json())["error"]["message"]
    r = await client.post(P + "/deployments", json={"release": "1.5.0", "cohort": "prod"},
                          headers=auth_headers(flagged))
    assert r.status == 201
    dep = (await r.json())["data"]
    assert (await client.delete(P + f"/deployments/{dep['id']}", headers=auth_headers(editor))).status == 403
    assert (await client.delete(P + f"/deployments/{dep['id']}", headers=auth_headers())).status == 200
    # only managers administer tokens and protection
    assert (await client.post(O + "/tokens", json={"name": "x", "role": "viewer"},
                              headers=auth_headers(editor))).status == 403
    assert (await client.patch(P + "/cohorts/prod", json={"protected": False},
                               headers=auth_headers(editor))).status == 403


async def test_approval_needs_a_second_identity(client):
    await cohort(client, "gated", requires_approval=True)
    await client.post(P + "/devices", json={"device_serial": "GATE1", "hardware_version": "mp", "cohort": "gated"},
                      headers=auth_headers())
    editor_a, editor_b = await make_token(client, "editor"), await make_token(client, "editor")
    r = await client.post(P + "/deployments", json={"release": "1.5.0", "cohort": "gated"},
                          headers=auth_headers(editor_a))
    assert r.status == 202
    req = (await r.json())["data"]
    assert req["status"] == "pending"
    assert await poll(client, "GATE1", "0.1.0", sw="keyfw") == (204, None, "no_active_release")
    pending = (await (await client.get(P + "/activation-requests", headers=auth_headers())).json())["data"]
    assert [q["id"] for q in pending] == [req["id"]]
    r = await client.post(P + f"/activation-requests/{req['id']}/approve", headers=auth_headers(editor_a))
    assert r.status == 403 and "different identity" in (await r.json())["error"]["message"]
    r = await client.post(P + f"/activation-requests/{req['id']}/approve", headers=auth_headers(editor_b))
    assert r.status == 200 and (await r.json())["data"]["status"] == "approved"
    assert await poll(client, "GATE1", "0.1.0", sw="keyfw") == (200, "1.5.0", "full")
    assert (await client.post(P + f"/activation-requests/{req['id']}/reject",
                              headers=auth_headers(editor_b))).status == 409
    # a deactivation request can be rejected: nothing changes
    deps = (await (await client.get(P + "/deployments", params={"cohort": "gated"},
                                    headers=auth_headers())).json())["data"]
    r = await client.delete(P + f"/deployments/{deps[0]['id']}", headers=auth_headers(editor_a))
    assert r.status == 202
    rid = (await r.json())["data"]["id"]
    r = await client.post(P + f"/activation-requests/{rid}/reject", headers=auth_headers(editor_b))
    assert (await r.json())["data"]["status"] == "rejected"
    assert (await poll(client, "GATE1", "0.1.0", sw="keyfw"))[1] == "1.5.0"


async def test_history_audit_and_inspect(client):
    await poll(client, "HIS1", "1.0.0", sw="keyfw")
    await client.server.app[CHECKINS].flush()
    await poll(client, "HIS1", "1.5.0", sw="keyfw")
    await client.server.app[CHECKINS].flush()
    r = await client.get(P + "/devices/HIS1/history", headers=auth_headers())
    hist = (await r.json())["data"]
    assert [(h["version"], h["previous_version"]) for h in hist] == [("1.5.0", "1.0.0"), ("1.0.0", None)]
    r = await client.get(P + "/deployment-history", headers=auth_headers())
    events = (await r.json())["data"]
    assert {"activate", "pull"} <= {e["action"] for e in events}
    assert all(e["actor"] for e in events)
    r = await client.get(P + "/audit-log", params={"action": "deployment."}, headers=auth_headers())
    audit = (await r.json())["data"]
    assert audit and all(a["action"].startswith("deployment.") for a in audit)
    assert any(a["actor"].startswith("token:") for a in audit)
    # inspect: the reason and the rules considered
    r = await client.get(P + "/devices/HIS1/inspect", params={"software_type": "keyfw"}, headers=auth_headers())
    body = (await r.json())["data"]
    sw = body["software"][0]
    assert sw["current_version"] == "1.5.0" and sw["memfault"]["reason"] == "latest"
    assert sw["rules"]["cohort"] == "default" and sw["rules"]["table"]["full"]["version"] == "1.5.0"
    r = await client.get(P + "/devices/HIS1/inspect", params={"software_type": "keyfw", "current_version": "0.1.0"},
                         headers=auth_headers())
    sw = (await r.json())["data"]["software"][0]
    assert (sw["memfault"]["release"], sw["memfault"]["reason"]) == ("1.5.0", "full")
    assert (await client.get(P + "/devices/NOPE/inspect", headers=auth_headers())).status == 404
