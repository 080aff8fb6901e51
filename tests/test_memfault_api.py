"""The Memfault device API driven over HTTP like a device: /api/v0/releases/latest(/url)."""
from __future__ import annotations

import hashlib

import pytest
from conftest import P, PROJECT_KEY, auth_headers, deploy, upload_release

from gateway.appkeys import CHECKINS, MIRROR, POOL

LATEST = "/api/v0/releases/latest"
KEY = {"Memfault-Project-Key": PROJECT_KEY}
FW1 = b"firmware one " * 300
FW2 = b"firmware two " * 400
FW21 = b"delta 2.0.0 to 2.1.0" * 50


def q(serial="DEV1", hw="evt", sw="main", current=None, **extra):
    params = {"device_serial": serial, "hardware_version": hw, "software_type": sw, **extra}
    if current is not None:
        params["current_version"] = current
    return params


@pytest.fixture
async def released(client):
    """Full 1.0.0 and 2.0.0 plus delta 2.0.0->2.1.0, all active in the default cohort (once per module)."""
    view = client.server.app[MIRROR].by_slug["smart-sink"]
    if not any(r.version == "2.1.0" for r in view.releases.values()):
        await upload_release(client, FW1, version="1.0.0")
        await upload_release(client, FW2, version="2.0.0")
        await upload_release(client, FW21, version=["2.0.0", "2.1.0"])
        for rel in ("1.0.0", "2.0.0", ["2.0.0", "2.1.0"]):
            await deploy(client, rel)
    return client


async def test_missing_or_bad_key_is_403_json(client):
    for headers in ({}, {"Memfault-Project-Key": "nope"}):
        r = await client.get(LATEST, params=q(), headers=headers)
        assert r.status == 403
        assert r.content_type == "application/json"
        assert "Memfault-Project-Key" in (await r.json())["error"]["message"]


@pytest.mark.parametrize("params, field", [
    ({"hardware_version": "evt", "software_type": "main"}, "device_serial"),
    ({"device_serial": "A", "software_type": "main"}, "hardware_version"),
    ({"device_serial": "A", "hardware_version": "evt"}, "software_type"),
    ({"device_serial": "bad serial!", "hardware_version": "evt", "software_type": "main"}, "device_serial"),
    ({"device_serial": "A", "hardware_version": "x" * 300, "software_type": "main"}, "hardware_version"),
    ({"device_serial": "A", "hardware_version": "evt", "software_type": "nosuchsw"}, "software_type"),
])
async def test_bad_query_is_400_naming_the_field(released, params, field):
    for path in (LATEST, LATEST + "/url"):
        r = await released.get(path, params=params, headers=KEY)
        assert r.status == 400
        err = (await r.json())["error"]
        assert field in err["message"] and err["type"]


@pytest.mark.parametrize("current, version, reason", [
    ("0.9.0", "2.0.0", "full"),
    ("1.1.0", "2.0.0", "full"),
    (None, "2.0.0", "full"),
    ("2.0.0", "2.1.0", "delta"),
])
async def test_latest_json_answers(released, current, version, reason):
    r = await released.get(LATEST, params=q(current=current), headers=KEY)
    assert r.status == 200
    assert r.content_type == "application/json"
    body = await r.json()
    assert body["version"] == version and body["reason"] == reason
    assert body["is_delta"] is (reason == "delta")
    for field, typ in [("id", int), ("created_date", str), ("updated_date", str), ("display_name", str),
                       ("notes", str), ("revision", str), ("must_pass_through", bool), ("artifacts", list)]:
        assert isinstance(body[field], typ), field
    assert "extra_info" in body and "is_forced" in body
    art = body["artifacts"][0]
    content = {"2.0.0": FW2, "2.1.0": FW21}[version]
    assert art["file_size"] == len(content)
    assert art["sha256"] == hashlib.sha256(content).hexdigest()
    assert art["md5"] == hashlib.md5(content).hexdigest()
    assert art["sha1"] == hashlib.sha1(content).hexdigest()
    assert art["hardware_version"] == "evt" and art["filename"] == "app.bin"
    assert art["url"].startswith("http://gw.test:8080/dl/")


async def test_latest_url_is_exact_text_and_downloads_the_bytes(released):
    r = await released.get(LATEST + "/url", params=q(current="0.0.1"), headers=KEY)
    assert r.status == 200
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    raw = await r.read()
    assert int(r.headers["Content-Length"]) == len(raw)
    assert not raw.endswith((b"\n", b" ")) and len(raw) < 400
    url = raw.decode()
    assert url.startswith("http://gw.test:8080/dl/")
    d = await released.get(url.split("gw.test:8080", 1)[1])  # no auth header, like a device
    assert d.status == 200
    assert hashlib.sha256(await d.read()).hexdigest() == hashlib.sha256(FW2).hexdigest()


async def test_up_to_date_is_204_with_reason(released):
    for path in (LATEST, LATEST + "/url"):
        r = await released.get(path, params=q(current="2.1.0"), headers=KEY)
        assert r.status == 204
        assert r.headers["memfault-reason"] == "latest"
        assert await r.read() == b""


async def test_unknown_hardware_version_is_no_update_and_the_device_is_recorded(released):
    """Memfault answers 400, which its firmware SDK logs as an error: for a device, hardware the
    project has never seen is "no update"."""
    app = released.server.app
    for path in (LATEST, LATEST + "/url"):
        r = await released.get(path, params=q(serial="UNKHW1", hw="nosuchhw", current="1.0.0"), headers=KEY)
        assert r.status == 204 and r.headers["memfault-reason"] == "unknown_hardware_version"
    await app[CHECKINS].flush()
    assert await app[POOL].fetchval("SELECT hardware_version FROM devices WHERE serial = 'UNKHW1'") == "nosuchhw"


@pytest.mark.parametrize("registered_by", ["api", "checkin"])
async def test_poll_and_inspect_agree_when_reported_hardware_differs_from_registered(released, registered_by):
    """Registered as mp (factory provisioning, or its first check-in), reporting evt: the poll
    answers for the hardware the device runs on, and inspect says the same."""
    app = released.server.app
    serial = f"HWMIS-{registered_by}"
    if registered_by == "api":
        r = await released.post(P + "/devices", json={"device_serial": serial, "hardware_version": "mp"},
                                headers=auth_headers())
        assert r.status == 201, await r.text()
    else:
        await released.get(LATEST, params=q(serial=serial, hw="mp", current="1.0.0"), headers=KEY)
        await app[CHECKINS].flush()
    r = await released.get(LATEST, params=q(serial=serial, hw="evt", current="1.0.0"), headers=KEY)
    assert r.status == 200
    polled = (await r.json())["version"]
    await app[CHECKINS].flush()
    r = await released.get(P + f"/devices/{serial}/inspect", headers=auth_headers())
    body = (await r.json())["data"]
    assert body["hardware_version"] == "evt"
    assert [s["memfault"]["release"] for s in body["software"] if s["software_type"] == "main"] == [polled]
    dev = await app[POOL].fetchrow("SELECT hardware_version, reported_hardware_version FROM devices WHERE serial = $1",
                                   serial)
    assert tuple(dev) == ("mp", "evt")  # registered hardware stays; the report is kept beside it


async def test_never_downgrades_a_device_ahead_of_every_release(released):
    r = await released.get(LATEST, params=q(current="9.9.9"), headers=KEY)
    assert r.status == 204 and r.headers["memfault-reason"] == "latest"


async def test_sdk_quirks_are_tolerated(released):
    # bare-metal SDK: query starts with "?&", reserved chars percent-encoded, extra params
    path = LATEST + "/url?&device_serial=Q1&hardware_version=evt&software_type=main&current_version=1.0.0%2Bab"
    r = await released.get(path, headers={"memfault-project-key": PROJECT_KEY})
    assert r.status == 200
    # Nordic's iOS library sends device_id instead of device_serial; Android adds sdk params
    r = await released.get(LATEST, params={"device_id": "Q2", "hardware_version": "evt", "software_type": "main",
                                           "current_version": "2.0.0", "sdkPlatform": "android-cloud",
                                           "sdkVersion": "1.0"}, headers=KEY)
    assert r.status == 200 and (await r.json())["version"] == "2.1.0"
    # an odd current_version never makes a poll fail
    r = await released.get(LATEST, params=q(current="weird version (x)"), headers=KEY)
    assert r.status in (200, 204)


async def test_steady_state_poll_makes_no_database_round_trip(released):
    app = released.server.app
    await app[CHECKINS].preload_done()  # its start-up read of recent check-ins is not a poll's
    seen: list[str] = []
    # count statements on every connection the pool hands out, and on those it already holds
    pool = app[POOL]
    conns = [h._con for h in pool._holders if h._con is not None]
    assert conns
    for c in conns:
        c.add_query_logger(lambda rec: seen.append(rec.query))
    await app[CHECKINS].set_interval(3600)  # keep the write-behind flush out of the measured window
    await released.get(LATEST + "/url", params=q(serial="STEADY", current="1.0.0"), headers=KEY)
    await app[CHECKINS].flush()
    seen.clear()
    skipped = app[CHECKINS].skipped
    for i in range(50):
        r = await released.get(LATEST + "/url", params=q(serial="STEADY", current="1.0.0"), headers=KEY)
        assert r.status == 200
        r = await released.get(LATEST, params=q(serial=f"NEW{i}", current="2.1.0"), headers=KEY)
        assert r.status == 204
    assert seen == []
    # new devices are buffered, none written synchronously; the unchanged device is not rewritten
    assert len(app[CHECKINS]) == 50
    assert app[CHECKINS].skipped - skipped == 50
    await app[CHECKINS].flush()
    assert seen, "the query logger must see the flush, or the proof above proves nothing"


async def test_checkins_register_devices_and_version_history(released):
    app = released.server.app
    for current in ("1.0.0", "2.0.0", "2.0.0"):
        await released.get(LATEST, params=q(serial="HIST1", current=current), headers=KEY)
        await app[CHECKINS].flush()
    pool = app[POOL]
    dev = await pool.fetchrow("SELECT d.*, c.slug FROM devices d JOIN cohorts c ON c.id = d.cohort_id "
                              "WHERE serial = 'HIST1'")
    assert dev["slug"] == "default" and dev["hardware_version"] == "evt" and dev["last_seen"] is not None
    hist = await pool.fetch("SELECT version, previous_version FROM device_version_history h "
                            "JOIN devices d ON d.id = h.device_id WHERE d.serial = 'HIST1' ORDER BY h.id")
    assert [(h["version"], h["previous_version"]) for h in hist] == [("1.0.0", None), ("2.0.0", "1.0.0")]
    cur = await pool.fetchval("SELECT version FROM device_software s JOIN devices d ON d.id = s.device_id "
                              "WHERE d.serial = 'HIST1' AND software_type = 'main'")
    assert cur == "2.0.0"


async def test_per_device_rate_limit(released):
    from conftest import P, auth_headers

    r = await released.patch(P, json={"poll_limit_per_minute": 3}, headers=auth_headers())
    assert r.status == 200
    try:
        answers = [await released.get(LATEST, params=q(serial="RATE1", current="1.0.0"), headers=KEY)
                   for _ in range(5)]
        assert [a.status for a in answers] == [200, 200, 200, 204, 204]
        assert answers[-1].headers["memfault-reason"] == "rate-limited"
        other = await released.get(LATEST, params=q(serial="RATE2", current="1.0.0"), headers=KEY)
        assert other.status == 200  # the limit is per device
    finally:
        await released.patch(P, json={"poll_limit_per_minute": None}, headers=auth_headers())


async def test_overload_is_shed_with_503_but_health_answers(released):
    from gateway.http.errors import Inflight

    old = Inflight.cap
    Inflight.cap = 0
    try:
        r = await released.get(LATEST, params=q(current="1.0.0"), headers=KEY)
        assert r.status == 503 and r.headers["Retry-After"] == "1"
        assert (await r.json())["error"]["type"] == "overloaded"
        assert (await released.get("/healthz")).status == 200
    finally:
        Inflight.cap = old
    assert (await released.get(LATEST, params=q(current="1.0.0"), headers=KEY)).status == 200


async def test_a_new_process_learns_recent_checkins_and_does_not_rewrite_them(released):
    from gateway.memory.checkins import CheckinBuffer

    app = released.server.app
    await released.get(LATEST, params=q(serial="PRELOAD1", current="1.0.0"), headers=KEY)
    await app[CHECKINS].flush()
    fresh = CheckinBuffer(app[POOL], last_seen_granularity=300)  # as a newly started worker
    assert await fresh.preload() >= 1
    pid = app[MIRROR].by_slug["smart-sink"].id
    fresh.add(pid, "PRELOAD1", "evt", "main", "1.0.0", "memfault")
    assert (len(fresh), fresh.skipped) == (0, 1)  # what the database holds: nothing to write
    fresh.add(pid, "PRELOAD1", "evt", "main", "2.0.0", "memfault")
    fresh.add(pid, "PRELOAD-NEW", "evt", "main", "1.0.0", "memfault")
    assert (len(fresh), fresh.skipped) == (2, 1)


async def test_a_restarted_worker_skips_the_preload_the_shared_table_already_holds(released):
    from gateway.memory.checkins import CheckinBuffer

    app = released.server.app
    await released.get(LATEST, params=q(serial="PRELOAD-SHARED"), headers=KEY)
    await app[CHECKINS].flush()
    first = CheckinBuffer(app[POOL], last_seen_granularity=300)
    assert await first.preload() >= 1
    again = CheckinBuffer(app[POOL], last_seen_granularity=300)
    again._written = first._written  # as a worker forked after the table was filled
    assert await again.preload() == 0 and again.known() == first.known()


async def test_preload_covers_devices_that_never_reported_a_version(released):
    from gateway.memory.checkins import CheckinBuffer

    app = released.server.app
    await released.get(LATEST, params=q(serial="PRELOAD-NOVERSION"), headers=KEY)
    await app[CHECKINS].flush()
    fresh = CheckinBuffer(app[POOL], last_seen_granularity=300)
    await fresh.preload()
    pid = app[MIRROR].by_slug["smart-sink"].id
    fresh.add(pid, "PRELOAD-NOVERSION", "evt", "main", None, "memfault")
    assert (len(fresh), fresh.skipped) == (0, 1)


async def test_preload_sizes_the_state_table_for_the_whole_fleet(released):
    """Devices not seen recently are not preloaded, but the table is sized for them: when they
    come back, it does not stop the event loop to grow."""
    from gateway.memory.checkins import CheckinBuffer

    app = released.server.app
    pool = app[POOL]
    pid = app[MIRROR].by_slug["smart-sink"].id
    n = 20_000  # more than the table's smallest size holds
    await pool.execute(
        "INSERT INTO devices (project_id, serial, cohort_id) SELECT $1, 'BULK-' || i, "
        "(SELECT id FROM cohorts WHERE project_id = $1 AND is_default) FROM generate_series(1, $2) i", pid, n)
    await pool.execute("INSERT INTO device_software (device_id, software_type, version) "
                       "SELECT id, 'main', '1.0.0' FROM devices WHERE serial LIKE 'BULK-%'")
    try:
        await pool.execute("ANALYZE device_software")
        fresh = CheckinBuffer(pool, last_seen_granularity=300)
        await fresh.preload()
        slots = fresh._written.slots
        for i in range(n):  # the fleet checks back in
            fresh._written.put(i + 1, 1, 0)
        assert fresh._written.slots == slots  # no growth
    finally:
        await pool.execute("DELETE FROM devices WHERE serial LIKE 'BULK-%'")
