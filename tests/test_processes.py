"""End to end with real processes: `ota-gateway serve` subprocesses on one database, driven by
the real memfault-cli and by HTTP polls like a device."""
from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from conftest import ORG, ORG_TOKEN, PROJECT, PROJECT_KEY

from procs import Gateway

MEMFAULT = Path(sys.executable).parent / "memfault"


@pytest.fixture(scope="module")
def gateways(database_url, data_dir):
    gws = [Gateway(database_url, data_dir), Gateway(database_url, data_dir, workers=2)]
    try:
        for g in gws:
            g.wait_ready()
        yield gws
    finally:
        for g in gws:
            out = g.stop()
            assert g.proc.returncode == 0, out


async def memfault(gw: Gateway, *args: str) -> str:
    env = {**os.environ, "MEMFAULT_URL": gw.url, "MEMFAULT_ORG": ORG, "MEMFAULT_PROJECT": PROJECT,
           "MEMFAULT_ORG_TOKEN": ORG_TOKEN}
    proc = await asyncio.create_subprocess_exec(str(MEMFAULT), *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def latest(session, gw: Gateway, serial: str, current: str | None, sw="stm32-fw", hw="mp"):
    params = {"device_serial": serial, "hardware_version": hw, "software_type": sw}
    if current:
        params["current_version"] = current
    async with session.get(gw.url + "/api/v0/releases/latest", params=params,
                           headers={"Memfault-Project-Key": PROJECT_KEY}) as r:
        return r.status, (await r.json() if r.status == 200 else r.headers.get("memfault-reason"))


async def test_real_memfault_cli_full_delta_mpt_and_deploy(gateways, tmp_path):
    gw, other = gateways
    files = {}
    for name, size in (("v1.bin", 5000), ("v15.bin", 6000), ("v2.bin", 7000), ("d2.bin", 900)):
        files[name] = tmp_path / name
        files[name].write_bytes(os.urandom(size))
    common = ["--hardware-version", "mp", "--software-type", "stm32-fw"]
    await memfault(gw, "upload-ota-payload", *common, "--software-version", "1.0.0", str(files["v1.bin"]))
    await memfault(gw, "upload-ota-payload", *common, "--software-version", "1.5.0", "--must-pass-through",
                   "--notes", "bootloader migration", "--extra-metadata", "k1=v1", str(files["v15.bin"]))
    await memfault(gw, "upload-ota-payload", *common, "--software-version", "2.0.0", str(files["v2.bin"]))
    await memfault(gw, "upload-ota-payload", *common, "--delta-from", "1.0.0", "--delta-to", "2.0.0",
                   str(files["d2.bin"]))
    # the same upload again is "already uploaded" (409), which the CLI reports as success
    out = await memfault(gw, "upload-ota-payload", *common, "--software-version", "1.0.0", str(files["v1.bin"]))
    assert "already" in out.lower()
    await memfault(gw, "deploy-release", "--release-version", "1.0.0", "--cohort", "default")
    await memfault(gw, "deploy-release", "--release-version", "1.5.0", "--cohort", "default")
    await memfault(gw, "deploy-release", "--release-version", "2.0.0", "--cohort", "default")
    async with aiohttp.ClientSession() as s:
        status, body = await latest(s, gw, "CLI1", "0.9.0")
        assert status == 200 and body["version"] == "1.5.0" and body["must_pass_through"] is True
        assert body["notes"] == "bootloader migration" and body["artifacts"][0]["extra_info"] == {"k1": "v1"}
        status, body = await latest(s, gw, "CLI1", "1.5.0")
        assert (status, body["version"], body["reason"]) == (200, "2.0.0", "full")
        # delta not yet active: the device on 1.0.0 must pass through 1.5.0
        status, body = await latest(s, gw, "CLI1", "1.0.0")
        assert body["version"] == "1.5.0"
        await memfault(gw, "deploy-release", "--delta-from", "1.0.0", "--delta-to", "2.0.0", "--cohort", "default")
        status, body = await latest(s, gw, "CLI1", "1.0.0")
        assert (body["version"], body["is_delta"], body["reason"]) == ("2.0.0", True, "delta")
        async with s.get(body["artifacts"][0]["url"]) as r:
            assert hashlib.sha256(await r.read()).hexdigest() == hashlib.sha256(files["d2.bin"].read_bytes()).hexdigest()
        # deactivate the delta and the MPT: 1.0.0 goes straight to 2.0.0 full
        await memfault(gw, "deploy-release", "--delta-from", "1.0.0", "--delta-to", "2.0.0", "--cohort", "default",
                       "--deactivate")
        await memfault(gw, "deploy-release", "--release-version", "1.5.0", "--cohort", "default", "--deactivate")
        status, body = await latest(s, gw, "CLI1", "1.0.0")
        assert (body["version"], body["reason"]) == ("2.0.0", "full")
        # staged rollout through the CLI: --rollout-percent, in a cohort of exactly 4 devices
        mgmt = gw.url + f"/api/v0/organizations/{ORG}/projects/{PROJECT}"
        auth = {"Authorization": f"Bearer {ORG_TOKEN}"}
        async with s.post(mgmt + "/cohorts", json={"slug": "rollout", "name": "Rollout"}, headers=auth) as r:
            assert r.status == 201
        for i in range(4):
            async with s.post(mgmt + "/devices", json={"device_serial": f"RO{i}", "hardware_version": "mp",
                                                      "cohort": "rollout"}, headers=auth) as r:
                assert r.status == 201
        v3 = tmp_path / "v3.bin"
        v3.write_bytes(os.urandom(3000))
        await memfault(gw, "upload-ota-payload", *common, "--software-version", "3.0.0", str(v3))
        await memfault(gw, "deploy-release", "--release-version", "3.0.0", "--cohort", "rollout",
                       "--rollout-percent", "50")
        answers = [await latest(s, gw, f"RO{i}", "2.0.0") for i in range(4)]
        assert sorted(a[0] for a in answers) == [200, 200, 204, 204]
        assert {a[1] for a in answers if a[0] == 204} == {"not_staged"}
        # widening through the CLI keeps the two staged devices and adds one
        first = {i for i, a in enumerate(answers) if a[0] == 200}
        await memfault(gw, "deploy-release", "--release-version", "3.0.0", "--cohort", "rollout",
                       "--rollout-percent", "75")
        answers = [await latest(s, gw, f"RO{i}", "2.0.0") for i in range(4)]
        wider = {i for i, a in enumerate(answers) if a[0] == 200}
        assert len(wider) == 3 and first <= wider


async def test_activation_through_one_process_is_served_by_the_other_within_1s(gateways, tmp_path):
    gw, other = gateways
    fw = tmp_path / "x.bin"
    fw.write_bytes(os.urandom(2000))
    await memfault(gw, "upload-ota-payload", "--hardware-version", "mp", "--software-type", "xfw",
                   "--software-version", "4.0.0", str(fw))
    async with aiohttp.ClientSession() as s:
        # the second gateway (two workers) must know the new software type first, through NOTIFY
        t_end = time.monotonic() + 5
        while (await latest(s, other, "X1", "1.0.0", sw="xfw"))[0] == 400 and time.monotonic() < t_end:
            await asyncio.sleep(0.01)
        assert (await latest(s, other, "X1", "1.0.0", sw="xfw")) == (204, "no_active_release")
        await memfault(gw, "deploy-release", "--release-version", "4.0.0", "--cohort", "default")
        t0 = time.monotonic()
        # every poll is answered; keep polling (bounded) until the other process serves the change
        while time.monotonic() - t0 < 5:
            status, body = await latest(s, other, "X1", "1.0.0", sw="xfw")
            if status == 200:
                break
        elapsed = time.monotonic() - t0
        assert status == 200 and body["version"] == "4.0.0"
        assert elapsed < 1.0, f"took {elapsed:.3f}s"


async def test_metrics_aggregate_across_workers(gateways):
    _, other = gateways
    async with aiohttp.ClientSession() as s:
        for _ in range(20):
            await latest(s, other, "M1", "1.0.0")
        await asyncio.sleep(1.2)  # workers publish their counters once a second
        async with s.get(other.url + "/metrics") as r:
            text = await r.text()
    assert "ota_gateway_workers 2.0" in text
    polls = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("ota_gateway_polls_total{protocol=\"memfault\""))
    assert polls >= 20
    assert "ota_gateway_http_request_duration_seconds_bucket" in text
    assert "ota_gateway_checkin_buffer_depth" in text
    assert "M1" not in text  # never a serial as a label


async def test_sigterm_flushes_buffered_checkins(database_url, data_dir):
    """Check-ins still in the write-behind buffer are written on a graceful shutdown."""
    import asyncpg

    os.environ["OTA_FLUSH_INTERVAL"] = "3600"  # only the shutdown flush can write them
    try:
        gw = Gateway(database_url, data_dir, workers=2)
    finally:
        del os.environ["OTA_FLUSH_INTERVAL"]
    try:
        gw.wait_ready()
        async with aiohttp.ClientSession() as s:
            # make the software type and hardware version known to the project
            async with s.patch(gw.url + f"/api/v0/organizations/{ORG}/projects/{PROJECT}",
                               json={"ddi_software_type": "shut-fw", "ddi_hardware_version": "shut-hw"},
                               headers={"Authorization": f"Bearer {ORG_TOKEN}"}) as r:
                assert r.status == 200
            for i in range(40):
                status, _ = await latest(s, gw, f"SHUT{i}", "1.0.0", sw="shut-fw", hw="shut-hw")
                if status == 400:  # the other worker has not taken the NOTIFY yet: bounded retry
                    for _ in range(100):
                        status, _ = await latest(s, gw, f"SHUT{i}", "1.0.0", sw="shut-fw", hw="shut-hw")
                        if status != 400:
                            break
                assert status == 204
    finally:
        out = gw.stop()
    assert gw.proc.returncode == 0, out
    conn = await asyncpg.connect(database_url)
    try:
        n = await conn.fetchval("SELECT count(*) FROM devices WHERE serial LIKE 'SHUT%'")
        versions = await conn.fetchval(
            "SELECT count(*) FROM device_software s JOIN devices d ON d.id = s.device_id "
            "WHERE d.serial LIKE 'SHUT%' AND s.version = '1.0.0'")
    finally:
        await conn.close()
    assert (n, versions) == (40, 40)


async def test_graceful_restart_and_killed_worker_lose_no_poll(database_url, data_dir):
    """SIGHUP replaces every worker one at a time; a worker killed with SIGKILL is respawned;
    polls on new connections meanwhile all succeed."""
    import signal

    gw = Gateway(database_url, data_dir, workers=2)
    failures = polls = 0
    try:
        gw.wait_ready()
        conn = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=conn) as s:
            async def pids() -> set[int]:
                return gw.worker_pids()

            async def poll_until(pred, timeout=30.0) -> None:
                nonlocal failures, polls
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    for _ in range(10):
                        try:
                            status, _ = await latest(s, gw, "RESTART1", "1.0.0", sw="shut-fw", hw="shut-hw")
                            polls += 1
                            failures += status >= 500  # any answer counts; none may be an error
                        except aiohttp.ClientError:
                            failures += 1
                    if await pred():
                        return
                raise AssertionError("condition not reached")

            old = await pids()
            assert len(old) == 2
            os.kill(gw.proc.pid, signal.SIGHUP)

            async def replaced() -> bool:
                return not (await pids()) & old
            await poll_until(replaced)
            current = await pids()
            assert len(current) == 2
            victim = next(iter(current))
            os.kill(victim, signal.SIGKILL)

            async def respawned() -> bool:
                got = await pids()
                return victim not in got and len(got) == 2
            await poll_until(respawned)
    finally:
        out = gw.stop()
    assert gw.proc.returncode == 0, out
    assert polls > 0 and failures == 0, (polls, failures)


async def _both_workers_up(gw) -> None:
    """Bounded wait until both workers report in /metrics (each publishes once a second)."""
    async with aiohttp.ClientSession() as s:
        for _ in range(100):
            async with s.get(gw.url + "/metrics") as r:
                if "ota_gateway_workers 2.0" in await r.text():
                    return
            await asyncio.sleep(0.1)
    raise AssertionError("the second worker did not start")


async def test_workers_share_a_ddi_device_state_loaded_once(database_url, data_dir):
    """A DDI device polled on many connections (spread over both workers by SO_REUSEPORT) is read
    from the database once: the worker that did not load it takes it from the shared table."""
    base = "/api/v0/hawkbit/default/controller/v1/SHAREDDI1"
    gw = Gateway(database_url, data_dir, workers=2, env={"OTA_LISTEN_MODE": "reuseport"})
    with gw:
        await _both_workers_up(gw)  # on a loaded machine the second may still be starting
        async with aiohttp.ClientSession() as s:  # registered (configData) before the counted polls
            async with s.put(gw.url + base + "/configData", headers={"Authorization": f"GatewayToken {PROJECT_KEY}"},
                             json={"mode": "merge", "data": {"site": "lab"}}) as r:
                assert r.status == 200, await r.text()
        for _ in range(40):  # a new connection each time: a new source port, either worker
            async with aiohttp.ClientSession() as s:
                async with s.get(gw.url + base, headers={"Authorization": f"GatewayToken {PROJECT_KEY}"}) as r:
                    assert r.status == 200
        # configData's own load, then one for the polls; without sharing each worker loads it once
        wanted = {"ota_gateway_ddi_state_loads_total": lambda v: v == 2,
                  "ota_gateway_ddi_shared_hits_total": lambda v: v >= 1}
        async with aiohttp.ClientSession() as s:
            for _ in range(100):  # workers publish their counters once a second: bounded wait
                async with s.get(gw.url + "/metrics") as r:
                    text = await r.text()
                values = {line.split(" ")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                          if line.split(" ")[0] in wanted}
                if len(values) == 2 and all(ok(values[k]) for k, ok in wanted.items()):
                    break
                await asyncio.sleep(0.1)
        assert len(values) == 2 and all(ok(values[k]) for k, ok in wanted.items()), values
