"""Chaos: a simulated fleet (Memfault and DDI devices) polls, downloads, installs and reports
while the database is restarted and a worker is killed with SIGKILL. Zero failed polls, zero
lost DDI feedback, and the database ends up with every device's version.

Bounded: 40 devices, every wait has a deadline; loopback only."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from conftest import ORG, ORG_TOKEN, PROJECT, PROJECT_KEY
from procs import Gateway

from gateway.cli import prepare_database
from gateway.config import Settings
from gateway.pgembed import EmbeddedPostgres

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "loadtest"))
from fleet_sim import FleetSim, make_fleet, publish  # noqa: E402


@pytest.fixture(scope="module")
def own_pg():
    root = tempfile.mkdtemp(prefix="ota-chaos-")
    pg = EmbeddedPostgres(root, fast=True)
    try:
        dsn = pg.start()
        settings = Settings(database_url=dsn, bootstrap={"org": ORG, "project": PROJECT, "org_token": ORG_TOKEN,
                                                         "project_key": PROJECT_KEY})
        asyncio.run(prepare_database(settings))
        yield pg, dsn, root
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


async def until(pred, timeout: float, what: str) -> None:
    """Bounded wait for a condition of the running simulation."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_fleet_survives_database_restart_and_worker_kill(own_pg):
    pg, dsn, root = own_pg
    gw = Gateway(dsn, os.path.join(root, "data"), workers=2)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, gw.wait_ready)
        async with aiohttp.ClientSession() as s:
            await publish(s, gw.url, ORG_TOKEN, ORG, PROJECT, "2.0.0", os.urandom(64 * 1024))
            devices = make_fleet(40, ddi_share=0.5, versions=("1.0.0",), prefix="CHAOS")
            sim = FleetSim(gw.url, PROJECT_KEY, devices, poll_interval=0.2)
            run = asyncio.create_task(sim.run(duration=90))
            await until(lambda: all(d.version == "2.0.0" for d in devices), 30, "the fleet to install 2.0.0")

            # fault 1: the database restarts while devices keep polling
            await loop.run_in_executor(None, pg.stop)
            polls_at_stop = sim.stats.polls
            await until(lambda: sim.stats.polls >= polls_at_stop + 200, 20, "polls during the outage")
            polls_during_outage = sim.stats.polls - polls_at_stop
            await loop.run_in_executor(None, pg.start)

            async def buffers_drained() -> bool:
                async with s.get(gw.url + "/metrics") as r:
                    text = await r.text()
                depth = float(next(line.split()[-1] for line in text.splitlines()
                                   if line.startswith("ota_gateway_checkin_buffer_depth ")))
                return depth == 0
            # the check-ins buffered during the outage reach the database before the next fault
            deadline = time.monotonic() + 30
            while not await buffers_drained():
                assert time.monotonic() < deadline, "check-in buffers did not drain after the outage"
                await asyncio.sleep(0.2)

            # a new release while the fleet is live, then fault 2: a worker is killed mid-rollout
            async def publish_when_back() -> None:
                for _ in range(100):  # the management API answers 503 until the gateway reconnects
                    try:
                        await publish(s, gw.url, ORG_TOKEN, ORG, PROJECT, "3.0.0", os.urandom(64 * 1024))
                        return
                    except AssertionError:
                        await asyncio.sleep(0.1)
                raise AssertionError("could not publish 3.0.0 after the database came back")
            await publish_when_back()
            await until(lambda: sum(d.version == "3.0.0" for d in devices) >= 5, 30, "the rollout to start")
            victim = sorted(gw.worker_pids())[0]
            os.kill(victim, signal.SIGKILL)
            try:
                await until(lambda: all(d.version == "3.0.0" for d in devices), 40, "the fleet to install 3.0.0")
            except AssertionError:
                stuck = [(d.serial, d.protocol, d.version) for d in devices if d.version != "3.0.0"]
                raise AssertionError(f"not updated: {stuck}; gateway said: {gw.output()[-4000:]}") from None
            await until(lambda: len(gw.worker_pids()) == 2 and victim not in gw.worker_pids(), 20, "a new worker")
            sim.stop()
            stats = await run
    finally:
        out = gw.stop()
    assert gw.proc.returncode == 0, out

    print(f"chaos: {stats.polls} polls ({polls_during_outage} during the database outage), "
          f"{len(stats.failed_polls)} failed, {stats.updates} updates, {len(stats.feedback_acked)} DDI feedback "
          f"acknowledged, {stats.feedback_retries} feedback retries, {stats.reconnects} reconnects")
    assert stats.failed_polls == [], (stats.failed_polls[:20], out[-3000:])
    assert stats.bad_downloads == []
    conn = await asyncpg.connect(dsn)
    try:
        # every acknowledged DDI feedback is in the database
        rows = await conn.fetch(
            "SELECT d.serial, f.action_id, f.execution, f.finished FROM device_action_feedback f "
            "JOIN device_actions a ON a.id = f.action_id JOIN devices d ON d.id = a.device_id")
        stored = {(r["serial"], r["action_id"], r["execution"], r["finished"]) for r in rows}
        lost = [fb for fb in stats.feedback_acked if fb not in stored]
        assert stats.feedback_acked and lost == []
        # the write-behind buffers drained after the shutdown: every device's version is stored
        versions = dict(await conn.fetch(
            "SELECT d.serial, s.version FROM device_software s JOIN devices d ON d.id = s.device_id "
            "WHERE d.serial LIKE 'CHAOS%' AND s.software_type = 'main'"))
        assert versions == {d.serial: d.version for d in devices}
        history = await conn.fetch(
            "SELECT d.serial, array_agg(h.version ORDER BY h.id) AS versions FROM device_version_history h "
            "JOIN devices d ON d.id = h.device_id WHERE d.serial LIKE 'CHAOS%' GROUP BY d.serial")
        protocol = {d.serial: d.protocol for d in devices}
        bad = [(r["serial"], protocol[r["serial"]], r["versions"]) for r in history
               if r["versions"][-1] != "3.0.0" or "2.0.0" not in r["versions"]]
        assert bad == []
        assert len(history) == len(devices)
    finally:
        await conn.close()
