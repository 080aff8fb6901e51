"""The hawkBit DDI device API driven over HTTP like a device (wire format from specs/ddi.md)."""
from __future__ import annotations

import asyncio
import hashlib
import re

import pytest
from conftest import PROJECT, PROJECT_KEY, P, auth_headers, deploy, upload_release

from gateway.appkeys import CHECKINS, MIRROR, POOL
from gateway.domain import notify
from gateway.memory.ddi_cache import DDI_CACHE

GW = {"Authorization": f"GatewayToken {PROJECT_KEY}"}
PUBLIC = "http://gw.test:8080"
FW1 = b"swu one " * 500
FW2 = b"swu two " * 700
SLEEP_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d:[0-5]\d$")


def base(serial: str, root: str = "", tenant: str = PROJECT) -> str:
    return f"{root}/{tenant}/controller/v1/{serial}"


def local(href: str) -> str:
    assert href.startswith(PUBLIC), href
    return href[len(PUBLIC):]


@pytest.fixture
async def released(client):
    """Full 1.0.0 and 2.0.0 of software type `main` for hardware `evt`, active in the default cohort."""
    view = client.server.app[MIRROR].by_slug[PROJECT]
    if not any(r.version == "2.0.0" and r.software_type == "main" for r in view.releases.values()):
        await upload_release(client, FW1, version="1.0.0", name="image.swu")
        await upload_release(client, FW2, version="2.0.0", name="image.swu")
        for rel in ("1.0.0", "2.0.0"):
            await deploy(client, rel)
    return client


async def config(client, serial, data, *, mode=None, headers=GW, root="", expect=200):
    body = {"data": data, **({"mode": mode} if mode else {})}
    r = await client.put(base(serial, root) + "/configData", json=body, headers=headers)
    assert r.status == expect, await r.text()
    return r


async def poll(client, serial, *, headers=GW, root="", tenant=PROJECT):
    r = await client.get(base(serial, root, tenant), headers=headers)
    assert r.status == 200, await r.text()
    assert r.headers["Content-Type"] == "application/json"
    return await r.json(), r


async def feedback(client, serial, action_id, execution, finished, details=("x",), *, kind="deploymentBase",
                   expect=200, headers=GW):
    body = {"id": action_id, "time": "20260101T000000",
            "status": {"execution": execution, "result": {"finished": finished, "progress": {"cnt": 1, "of": 1}},
                       "details": list(details)}}
    r = await client.post(f"{base(serial)}/{kind}/{action_id}/feedback", json=body, headers=headers)
    assert r.status == expect, await r.text()
    return r


async def offered(client, serial, **kw) -> int:
    """The action id of the deploymentBase the base poll offers."""
    body, _ = await poll(client, serial, **kw)
    href = body["_links"]["deploymentBase"]["href"]
    m = re.fullmatch(re.escape(PUBLIC) + r".*/deploymentBase/(\d+)\?c=-?\d+", href)
    assert m, href
    return int(m.group(1))


async def ready_device(client, serial, current="1.0.0", sw="main"):
    await config(client, serial, {"memfault__hardware_version": "evt", "memfault__software_type": sw,
                                  "memfault__current_version": current})
    return await offered(client, serial)


async def device_actions(client, serial):
    r = await client.get(f"{P}/devices/{serial}/ddi/actions", headers=auth_headers())
    assert r.status == 200, await r.text()
    return (await r.json())["data"]


# -- authentication --------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "GatewayToken nope"}, {"Authorization": f"gatewaytoken {PROJECT_KEY}"},
    {"Authorization": f"Bearer {PROJECT_KEY}"}, {"Authorization": "TargetToken nosuchtoken"},
])
async def test_unauthenticated_is_401_with_empty_body(client, headers):
    for method, path in (("GET", base("AUTH1")), ("PUT", base("AUTH1") + "/configData"),
                         ("POST", base("AUTH1") + "/deploymentBase/1/feedback"),
                         ("GET", base("AUTH1") + "/deploymentBase/1"),
                         ("GET", base("AUTH1") + "/softwaremodules/1/artifacts/image.swu"),
                         ("GET", "/api/v0/hawkbit/default/controller/v1/AUTH1")):
        r = await client.request(method, path, headers=headers, json={"data": {"a": "b"}})
        assert r.status == 401, (method, path)
        assert await r.read() == b""
        assert "WWW-Authenticate" not in r.headers


async def test_gateway_token_ignores_the_tenant_and_auto_registers(released):
    body, r = await poll(released, "MEMFAULT1", root="/api/v0/hawkbit", tenant="default")
    assert SLEEP_RE.match(body["config"]["polling"]["sleep"])
    assert body["_links"]["configData"]["href"] == f"{PUBLIC}/api/v0/hawkbit/default/controller/v1/MEMFAULT1/configData"
    assert r.headers["ota-gateway-reason"] == "no_hardware_version"
    app = released.server.app
    await app[CHECKINS].flush()
    assert await app[POOL].fetchval("SELECT count(*) FROM devices WHERE serial = 'MEMFAULT1'") == 1


async def test_invalid_controller_id_is_400_naming_it(client):
    r = await client.get(base("bad%20serial"), headers=GW)
    assert r.status == 400
    assert "controllerId" in (await r.json())["error"]["message"]


async def test_target_token_set_rotate_and_clear(released):
    r = await released.post(P + "/devices", json={"device_serial": "TT1", "hardware_version": "evt"},
                            headers=auth_headers())
    assert r.status == 201, await r.text()
    tokens = []
    for _ in range(2):
        r = await released.post(f"{P}/devices/TT1/ddi/token", headers=auth_headers())
        assert r.status == 200, await r.text()
        tokens.append((await r.json())["data"]["target_token"])
    old, new = ({"Authorization": f"TargetToken {t}"} for t in tokens)
    assert (await released.get(base("TT1"), headers=old)).status == 401
    await poll(released, "TT1", headers=new)
    await poll(released, "TT1", headers=new, root="/api/v0/hawkbit")
    # the token belongs to TT1 of this tenant only
    assert (await released.get(base("TT2"), headers=new)).status == 401
    assert (await released.get(base("TT1", tenant="default"), headers=new)).status == 401
    r = await released.get(f"{P}/devices/TT1/ddi", headers=auth_headers())
    assert (await r.json())["data"]["target_token_set"] is True
    assert tokens[1] not in await r.text()
    assert await released.server.app[POOL].fetchval(
        "SELECT ddi_token_hash FROM devices WHERE serial = 'TT1'") == hashlib.sha256(tokens[1].encode()).hexdigest()
    assert (await released.delete(f"{P}/devices/TT1/ddi/token", headers=auth_headers())).status == 204
    assert (await released.get(base("TT1"), headers=new)).status == 401
    r = await released.post(f"{P}/devices/NOPE/ddi/token", headers=auth_headers())
    assert r.status == 404 and "NOPE" in (await r.json())["error"]["message"]


# -- base poll, deploymentBase, artifacts ------------------------------------------------------------

@pytest.mark.parametrize("root", ["", "/api/v0/hawkbit"])
async def test_deployment_wire_format(released, root):
    serial = "WIRE" + ("M" if root else "H")
    await config(released, serial, {"memfault__hardware_version": "evt", "memfault__software_type": "main",
                                    "memfault__current_version": "1.0.0"}, root=root)
    body, r = await poll(released, serial, root=root)
    assert set(body) == {"config", "_links"}
    assert set(body["_links"]) == {"deploymentBase"}  # configData was just sent: not asked again
    href = body["_links"]["deploymentBase"]["href"]
    assert href.startswith(f"{PUBLIC}{root}/{PROJECT}/controller/v1/{serial}/deploymentBase/")
    action_id = int(href.rsplit("/", 1)[1].split("?c=")[0])
    assert 0 < action_id < 2**31
    r = await released.get(local(href), headers=GW)
    assert r.status == 200 and r.headers["Content-Type"] == "application/json"
    doc = await r.json()
    assert doc["id"] == str(action_id)
    assert doc["deployment"]["download"] == doc["deployment"]["update"] == "forced"
    [chunk] = doc["deployment"]["chunks"]
    assert (chunk["part"], chunk["version"], chunk["name"]) == ("os", "2.0.0", "main")
    [art] = chunk["artifacts"]
    assert art["filename"] == "image.swu" and art["size"] == len(FW2) and isinstance(art["size"], int)
    assert art["hashes"] == {"sha1": hashlib.sha1(FW2).hexdigest(), "md5": hashlib.md5(FW2).hexdigest(),
                             "sha256": hashlib.sha256(FW2).hexdigest()}
    assert set(art["_links"]) == {"download-http", "md5sum-http"}
    dl = local(art["_links"]["download-http"]["href"])
    assert dl.startswith(f"{root}/{PROJECT}/controller/v1/{serial}/softwaremodules/")
    assert dl.split("?")[0].endswith("/artifacts/image.swu")
    # signed: no header needed; unsigned: the device's header
    identity = {"Accept-Encoding": "identity"}  # SWUpdate's curl asks for no encoding
    for path, headers in ((dl, identity), (dl.split("?")[0], {**GW, **identity})):
        r = await released.get(path, headers=headers)
        assert r.status == 200, (path, await r.text())
        assert int(r.headers["Content-Length"]) == len(FW2), (path, await r.text(), r.headers)
        assert await r.read() == FW2
    r = await released.head(dl, headers=identity)
    assert r.status == 200 and int(r.headers["Content-Length"]) == len(FW2)
    r = await released.get(dl, headers={"Range": "bytes=100-"})
    assert r.status == 206 and await r.read() == FW2[100:]
    assert r.headers["Content-Range"] == f"bytes 100-{len(FW2) - 1}/{len(FW2)}"
    for md5_path, headers in ((local(art["_links"]["md5sum-http"]["href"]), {}), (dl.split("?")[0] + ".MD5SUM", GW)):
        r = await released.get(md5_path, headers=headers)
        assert r.status == 200 and r.content_type == "text/plain"
        assert await r.read() == f"{hashlib.md5(FW2).hexdigest()}  image.swu".encode()
    assert (await released.get(dl.split("?")[0])).status == 401
    module = dl.split("/artifacts/")[0]
    r = await released.get(module + "/artifacts", headers=GW)
    assert r.status == 200 and r.headers["Content-Type"] == "application/json"
    [listed] = await r.json()
    assert {k: listed[k] for k in ("filename", "hashes", "size")} == {k: art[k] for k in ("filename", "hashes", "size")}
    r = await released.get(dl.split("?")[0].replace("image.swu", "other.swu"), headers=GW)
    assert r.status == 404 and "fileName" in (await r.json())["error"]["message"]


async def test_poll_etag_and_304(released):
    await ready_device(released, "ETAG1")
    _, r = await poll(released, "ETAG1")
    r2 = await released.get(base("ETAG1"), headers={**GW, "If-None-Match": r.headers["ETag"]})
    assert r2.status == 304 and await r2.read() == b""


async def test_action_history_query(released):
    action_id = await ready_device(released, "HISTQ1")
    await feedback(released, "HISTQ1", action_id, "proceeding", "none", ["first"])
    await feedback(released, "HISTQ1", action_id, "proceeding", "none", ["second", "third"])
    r = await released.get(f"{base('HISTQ1')}/deploymentBase/{action_id}?actionHistory=2", headers=GW)
    assert (await r.json())["actionHistory"] == {"status": "RUNNING", "messages": ["third", "second"]}
    r = await released.get(f"{base('HISTQ1')}/deploymentBase/{action_id}", headers=GW)
    assert "actionHistory" not in await r.json()


# -- action lifecycle --------------------------------------------------------------------------------

async def test_success_lifecycle_records_version_and_stops_offering(released):
    action_id = await ready_device(released, "LIFE1")
    await released.get(f"{base('LIFE1')}/deploymentBase/{action_id}", headers=GW)
    # SWUpdate's printf-built body: raw newline inside a string, legacy id/time fields
    raw = (b'{"id": %d, "time": "20260101T000000", "status": {"result": {"finished": "none", "progress": '
           b'{"cnt": 3, "of": 0}}, "execution": "proceeding", "details": ["No artifact download URL.\n"]}}'
           % action_id)
    r = await released.post(f"{base('LIFE1')}/deploymentBase/{action_id}/feedback", data=raw, headers=GW)
    assert r.status == 200 and await r.read() == b""
    assert await offered(released, "LIFE1") == action_id  # still open after proceeding
    r = await feedback(released, "LIFE1", action_id, "closed", "success", ["Update Installed."])
    assert await r.read() == b""
    body, r = await poll(released, "LIFE1")
    assert "deploymentBase" not in body["_links"] and r.headers["ota-gateway-reason"] == "latest"
    assert body["_links"]["installedBase"]["href"].endswith(f"/installedBase/{action_id}")
    assert "configData" in body["_links"]  # attributes are requested again after an update
    await feedback(released, "LIFE1", action_id, "closed", "success", expect=410)
    r = await released.get(f"{base('LIFE1')}/deploymentBase/{action_id}", headers=GW)
    assert r.status == 404 and "actionId" in (await r.json())["error"]["message"]
    r = await released.get(local(body["_links"]["installedBase"]["href"]), headers=GW)
    assert r.status == 200 and (await r.json())["deployment"]["chunks"][0]["version"] == "2.0.0"
    pool = released.server.app[POOL]
    hist = await pool.fetch("SELECT version, previous_version, protocol FROM device_version_history h "
                            "JOIN devices d ON d.id = h.device_id WHERE d.serial = 'LIFE1' ORDER BY h.id")
    assert [tuple(h) for h in hist] == [("1.0.0", None, "ddi"), ("2.0.0", "1.0.0", "ddi")]
    r = await released.get(f"{P}/devices/LIFE1", headers=auth_headers())
    assert (await r.json())["data"]["software_versions"] == {"main": "2.0.0"}
    [action] = await device_actions(released, "LIFE1")
    assert action["status"] == "succeeded" and action["hawkbit_status"] == "FINISHED"
    assert action["retrieved_date"] and action["closed_date"]
    assert [f["execution"] for f in action["feedback"]] == ["proceeding", "closed"]
    assert action["feedback"][0]["details"] == ["No artifact download URL.\n"]
    assert action["feedback"][0]["progress"] == {"cnt": 3, "of": 0}


async def test_failure_blocks_the_release_until_an_operator_retries(released):
    action_id = await ready_device(released, "FAIL1")
    await feedback(released, "FAIL1", action_id, "closed", "failure", ["ERROR: handler failed"])
    body, r = await poll(released, "FAIL1")
    assert "deploymentBase" not in body.get("_links", {})
    assert r.headers["ota-gateway-reason"] == "failed_previously"
    await feedback(released, "FAIL1", action_id, "closed", "success", expect=410)
    r = await released.get(P + "/ddi/releases", headers=auth_headers())
    stats = next(s for s in (await r.json())["data"] if s["version"] == "2.0.0")
    assert stats["actions"]["failed"] >= 1
    r = await released.post(f"{P}/devices/FAIL1/ddi/actions/{action_id}/retry", headers=auth_headers())
    assert r.status == 200, await r.text()
    assert (await r.json())["data"]["cleared_failures"] == 1
    again = await offered(released, "FAIL1")
    assert again != action_id
    r = await released.post(f"{P}/devices/FAIL1/ddi/actions/{action_id}/retry", headers=auth_headers())
    assert r.status == 409
    r = await released.post(f"{P}/devices/FAIL1/ddi/actions/{again}/retry", headers=auth_headers())
    assert r.status == 409 and "open" in (await r.json())["error"]["message"]


@pytest.mark.parametrize("body, field", [
    ({}, "status"),
    ({"status": {"result": {"finished": "none"}}}, "status.execution"),
    ({"status": {"execution": "finished", "result": {"finished": "none"}}}, "status.execution"),
    ({"status": {"execution": "closed"}}, "status.result"),
    ({"status": {"execution": "closed", "result": {"finished": ["x"]}}}, "status.result.finished"),
])
async def test_feedback_schema_errors_are_400_naming_the_field(released, body, field):
    action_id = await ready_device(released, "SCHEMA1")
    r = await released.post(f"{base('SCHEMA1')}/deploymentBase/{action_id}/feedback", json=body, headers=GW)
    assert r.status == 400
    err = (await r.json())["error"]
    assert field in err["message"] and err["type"]


async def test_feedback_to_unknown_or_foreign_actions(released):
    mine = await ready_device(released, "OWN1")
    await ready_device(released, "OWN2")
    await feedback(released, "OWN2", mine, "proceeding", "none", expect=404)
    await feedback(released, "OWN1", 2**31 - 1, "proceeding", "none", expect=404)
    r = await released.post(f"{base('OWN1')}/deploymentBase/abc/feedback", json={}, headers=GW)
    assert r.status == 400 and "actionId" in (await r.json())["error"]["message"]
    # a closed report never fails over its free text
    huge = ["y" * 20_000, {"not": "a string"}, 7] * 40
    await feedback(released, "OWN1", mine, "closed", "success", huge)
    [action] = await device_actions(released, "OWN1")
    stored = action["feedback"][-1]["details"]
    assert action["status"] == "succeeded" and len(stored) == 100 and max(map(len, stored)) == 1024
    assert stored[1:3] == ['{"not":"a string"}', "7"]


# -- configData ----------------------------------------------------------------------------------

async def test_config_data_aliases_modes_and_immutable_hardware(released):
    await config(released, "CFG1", {"hardware_version": "evt", "software_type": "main", "sw_version": "2.0.0",
                                    "mac": "00:11:22:33:44:55"})
    body, r = await poll(released, "CFG1")
    assert r.headers["ota-gateway-reason"] == "latest" and "configData" not in body.get("_links", {})
    await config(released, "CFG1", {"memfault__hardware_version": "dvt", "serialNo": "9"})
    r = await released.get(f"{P}/devices/CFG1/ddi", headers=auth_headers())
    d = (await r.json())["data"]
    assert d["hardware_version"] == "evt" and d["software_type"] == "main"
    assert d["attributes"]["serialNo"] == "9" and d["attributes"]["mac"] == "00:11:22:33:44:55"
    await config(released, "CFG1", {"mac": "x", "serialNo": "9"}, mode="remove")
    await config(released, "CFG1", {"a": "1"}, mode="replace")
    r = await released.get(f"{P}/devices/CFG1/ddi", headers=auth_headers())
    assert (await r.json())["data"]["attributes"] == {"a": "1"}
    for bad, field in (({"data": {}}, "data"), ({"data": {"k": 5}}, "data.k"), ({"data": "x"}, "data"),
                       ({"data": {"k": "v"}, "mode": "append"}, "mode")):
        r = await released.put(base("CFG1") + "/configData", json=bad, headers=GW)
        assert r.status == 400 and field in (await r.json())["error"]["message"]


async def test_mac_only_device_uses_project_defaults_or_provisioned_hardware(released):
    await config(released, "MAC1", {"mac": "00:aa"})
    _, r = await poll(released, "MAC1")
    assert r.headers["ota-gateway-reason"] == "no_hardware_version"
    # provisioned through the management API: its hardware version applies
    r = await released.post(P + "/devices", json={"device_serial": "PROV1", "hardware_version": "evt"},
                            headers=auth_headers())
    assert r.status == 201
    await config(released, "PROV1", {"mac": "00:bb"})
    _, r = await poll(released, "PROV1")
    assert r.headers["ota-gateway-reason"] == "no_software_type"
    r = await released.patch(P, json={"ddi_software_type": "main", "ddi_hardware_version": "evt"},
                             headers=auth_headers())
    assert r.status == 200, await r.text()
    try:
        assert await offered(released, "MAC1")
        assert await offered(released, "PROV1")
    finally:
        r = await released.patch(P, json={"ddi_software_type": None, "ddi_hardware_version": None},
                                 headers=auth_headers())
        assert r.status == 200, await r.text()


# -- cancel -----------------------------------------------------------------------------------------

async def test_pulling_the_activation_offers_cancel_and_cancel_feedback_closes_it(released):
    await upload_release(released, b"cancel me" * 99, version="5.0.0", software_type="cancelfw", name="c.swu")
    dep = await deploy(released, "5.0.0")
    action_id = await ready_device(released, "CAN1", current="4.0.0", sw="cancelfw")
    r = await released.delete(f"{P}/deployments/{dep['id']}", headers=auth_headers())
    assert r.status == 200, await r.text()
    body, r = await poll(released, "CAN1")
    assert body["_links"]["cancelAction"]["href"] == f"{PUBLIC}{base('CAN1')}/cancelAction/{action_id}"
    assert "deploymentBase" not in body["_links"]
    r = await released.get(local(body["_links"]["cancelAction"]["href"]), headers=GW)
    assert r.status == 200 and r.headers["Content-Type"] == "application/json"
    assert await r.json() == {"id": str(action_id), "cancelAction": {"stopId": str(action_id)}}
    assert (await released.get(f"{base('CAN1')}/deploymentBase/{action_id}", headers=GW)).status == 404
    r = await feedback(released, "CAN1", action_id, "closed", "success", ["cancellation acknowledged."],
                       kind="cancelAction")
    assert await r.read() == b""
    body, r = await poll(released, "CAN1")
    assert "cancelAction" not in body.get("_links", {})
    assert r.headers["ota-gateway-reason"] == "no_active_release"
    await feedback(released, "CAN1", action_id, "closed", "success", kind="cancelAction", expect=410)
    [action] = await device_actions(released, "CAN1")
    assert action["status"] == "canceled" and action["feedback"][-1]["kind"] == "cancel"


async def test_moving_a_device_cancels_its_open_action(released):
    r = await released.post(P + "/cohorts", json={"slug": "ddi-elsewhere", "name": "Elsewhere"},
                            headers=auth_headers())
    assert r.status == 201, await r.text()
    action_id = await ready_device(released, "MOVE1")
    # cancel feedback for an action that is not being canceled
    await feedback(released, "MOVE1", action_id, "closed", "success", kind="cancelAction", expect=405)
    r = await released.patch(f"{P}/devices/MOVE1", json={"cohort": "ddi-elsewhere"}, headers=auth_headers())
    assert r.status == 200, await r.text()
    body, _ = await poll(released, "MOVE1")
    assert body["_links"]["cancelAction"]["href"].endswith(f"/cancelAction/{action_id}")
    await feedback(released, "MOVE1", action_id, "closed", "success", kind="cancelAction")
    body, r = await poll(released, "MOVE1")
    assert "_links" not in body or not ({"deploymentBase", "cancelAction"} & set(body["_links"]))


# -- hot path, cache invalidation, metrics ---------------------------------------------------------------

async def _quiesce(app) -> None:
    """Bounded wait until every notification sent so far has been applied by this process."""
    mirror = app[MIRROR]
    seen: list[int] = []

    def hook(msg):
        if msg.kind == "keys":  # the sentinel: a message every process understands, cheap to apply
            seen.append(mirror.reloads)

    mirror.hooks.append(hook)
    try:
        await app[POOL].execute("SELECT pg_notify('ota_gateway', $1)", notify.keys())
        for _ in range(500):
            if seen and mirror.reloads > seen[0]:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("notifications were not applied")
    finally:
        mirror.hooks.remove(hook)


async def polled_then_quiet(client, serials) -> list[str]:
    """Poll each device once, write their check-ins, let notifications settle, and from then on
    log every query the app's pooled connections send (the list returned)."""
    app = client.server.app
    await app[CHECKINS].set_interval(3600)  # keep the write-behind flush out of the measured window
    for serial in serials:
        await poll(client, serial)
    await app[CHECKINS].flush()
    await _quiesce(app)
    seen: list[str] = []
    for c in [h._con for h in app[POOL]._holders if h._con is not None]:
        c.add_query_logger(lambda rec: seen.append(rec.query))
    return seen


async def test_steady_state_ddi_poll_makes_no_database_round_trip(released):
    app = released.server.app
    action_id = await ready_device(released, "STEADY1")
    await released.get(f"{base('STEADY1')}/deploymentBase/{action_id}", headers=GW)
    await config(released, "IDLE1", {"memfault__hardware_version": "evt", "memfault__software_type": "main",
                                     "memfault__current_version": "2.0.0"})
    seen = await polled_then_quiet(released, ("STEADY1", "IDLE1"))
    loads = app[DDI_CACHE].loads
    for _ in range(50):
        assert await offered(released, "STEADY1") == action_id
        body, r = await poll(released, "IDLE1")
        assert r.headers["ota-gateway-reason"] == "latest"
    assert seen == [] and app[DDI_CACHE].loads == loads
    # a change made elsewhere reaches the cache through NOTIFY: the next poll reloads the device
    await app[POOL].execute(
        "UPDATE devices SET ddi_config_requested = true WHERE serial = 'IDLE1';"
        f"SELECT pg_notify('ota_gateway', 'ddi:{app[MIRROR].by_slug[PROJECT].id}:IDLE1:elsewhere')")
    await _quiesce(app)
    body, _ = await poll(released, "IDLE1")
    assert "configData" in body["_links"] and app[DDI_CACHE].loads == loads + 1
    assert seen, "the query logger must see the reload, or the proof above proves nothing"


async def test_state_loads_and_cached_devices_are_metrics(released):
    from test_metrics import samples

    before = samples(await (await released.get("/metrics")).text())
    for serial in ("LOADM1", "LOADM2"):
        for _ in range(3):  # one load each; the repeats are answered from memory
            await poll(released, serial)
    m = samples(await (await released.get("/metrics")).text())
    assert m["ota_gateway_ddi_state_loads_total"] - before.get("ota_gateway_ddi_state_loads_total", 0) == 2
    assert m["ota_gateway_ddi_cached_devices"] == len(released.server.app[DDI_CACHE]) >= 2


async def test_polls_are_counted_and_inspect_shows_the_ddi_answer(released):
    await ready_device(released, "INSP1")
    r = await released.get("/metrics")
    assert 'ota_gateway_polls_total{protocol="ddi",reason="full"}' in await r.text()
    r = await released.get(f"{P}/devices/INSP1/inspect", headers=auth_headers())
    assert r.status == 200, await r.text()
    [entry] = [s for s in (await r.json())["data"]["software"] if s["software_type"] == "main"]
    assert entry["ddi"]["next"] == "deploymentBase" and entry["ddi"]["applies"] is True


@pytest.mark.parametrize("interval", [10, 60, 3600, 43200])
def test_polling_jitter_is_deterministic_and_bounded(interval):
    from gateway.api.ddi.render import jittered

    values = {s: jittered(interval, s) for s in (f"DEV{i}" for i in range(200))}
    assert all(abs(v - interval) <= interval // 10 for v in values.values())
    assert len(set(values.values())) >= min(2 * (interval // 10) + 1, 20)  # devices are spread out
    assert all(jittered(interval, s) == v for s, v in values.items())  # the same on every poll


async def test_ddi_poll_rate_limit_answers_429_with_retry_after(released):
    r = await released.patch(P, json={"poll_limit_per_minute": 2}, headers=auth_headers())
    assert r.status == 200
    try:
        statuses = []
        for _ in range(4):
            r = await released.get(base("RATEDDI1"), headers=GW)
            statuses.append(r.status)
        assert statuses == [200, 200, 429, 429]
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert (await r.json())["error"]["type"] == "rate_limited"
    finally:
        await released.patch(P, json={"poll_limit_per_minute": None}, headers=auth_headers())


async def test_a_change_notice_drops_the_cached_state_even_while_the_mirror_is_busy(released):
    """Another process changed a device (its configData, say): the notice drops this process's
    cached state as it arrives, not after whatever reload the mirror is busy with (a slow reload,
    or a pool with no free connection, once left a worker answering from a stale state)."""
    import asyncio

    from gateway.domain import notify
    from gateway.memory.ddi_cache import DDI_CACHE
    from gateway.store import db as db_store

    app = released.server.app
    await config(released, "NOTICE1", {"memfault__hardware_version": "evt"})
    await poll(released, "NOTICE1")
    view = app[MIRROR].by_slug[PROJECT]
    key = (view.id, "NOTICE1")
    cache = app[DDI_CACHE]
    assert cache.peek(key) is not None
    async with app[MIRROR]._apply_lock:  # a reload under way
        async with app[POOL].acquire() as conn:
            await db_store.notify(conn, notify.ddi(view.id, "NOTICE1", "another-process"))
        for _ in range(200):  # bounded: 2 s
            if cache.peek(key) is None:
                break
            await asyncio.sleep(0.01)
        assert cache.peek(key) is None
