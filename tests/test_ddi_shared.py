"""The DDI states a host's workers share (gateway/ddi_shared.py): what is kept, what is refused,
how it is invalidated, what a torn or foreign slot does, and that forked processes see each
other's states. Then the whole DDI suite again with a one-entry per-worker cache, so that nearly
every poll reads its state from the shared table."""
from __future__ import annotations

import os
import re

import pytest
from conftest import ORG, PROJECT, PROJECT_KEY  # noqa: F401
from test_ddi import *  # noqa: F401,F403  (the DDI suite, run again on the shared table)
from test_ddi import _quiesce, config, poll, polled_then_quiet

from gateway.appkeys import MIRROR, POOL

from gateway.config import Settings
from gateway.memory.ddi_shared import SharedStates
from gateway.memory.ddi_cache import DeviceCache, unknown
from gateway.domain.ddi_actions import ActionView, DeviceState


def state(device_id=7, hw="mp", sw=None, versions=None, config=False, installed=None, actions=None,
          blocked=frozenset(), token=None) -> DeviceState:
    return DeviceState(device_id, hw, sw, versions or {}, token, config, actions or {}, installed or {}, blocked)


ACTION = ActionView(1, 2, 3, "main", "2.0.0", "open", False, False)

KEPT = [  # quiet states: they come back equal
    ("known, nothing reported", state()),
    ("no hardware version", state(hw=None)),
    ("a version", state(versions={"main": "1.0.0"})),
    ("a DDI software type", state(sw="linux", versions={"linux": "1.0.0"})),
    ("config requested", state(config=True, versions={"main": "1.0.0"})),
    ("installed, same type", state(versions={"main": "2.0.0"}, installed={"main": (41, 9)})),
    ("installed, no version", state(installed={"main": (41, 9)})),
    ("installed, payload gone", state(versions={"main": "2.0.0"}, installed={"main": (41, None)})),
]
REFUSED = [  # anything else stays in each worker's own cache only
    ("an unknown serial", unknown()),
    ("an open action", state(actions={"main": ACTION})),
    ("a blocked release", state(blocked=frozenset({5}))),
    ("a device token", state(token="ab" * 32)),
    ("two software types", state(versions={"main": "1.0.0", "boot": "2.0.0"})),
    ("version and install of different types", state(versions={"main": "1.0.0"}, installed={"boot": (4, 5)})),
]


@pytest.mark.parametrize("name,st", KEPT, ids=[k[0] for k in KEPT])
def test_quiet_states_round_trip(name, st):
    t = SharedStates(1000)
    assert t.put(1, "D1", st, t.generation)
    got = t.get(1, "D1")
    assert got == st
    assert t.get(1, "D2") is None and t.get(2, "D1") is None


@pytest.mark.parametrize("name,st", REFUSED, ids=[k[0] for k in REFUSED])
def test_other_states_are_not_shared(name, st):
    t = SharedStates(1000)
    assert not t.put(1, "D1", st, t.generation)
    assert t.get(1, "D1") is None


def test_invalidation_and_loads_that_overlapped_one():
    t = SharedStates(1000)
    g = t.generation
    assert t.put(1, "D1", state(), g)
    t.invalidate(1, "D1")
    assert t.get(1, "D1") is None
    assert not t.put(1, "D1", state(), g)  # loaded before the invalidation: stale, not published
    assert t.get(1, "D1") is None
    assert t.put(1, "D1", state(versions={"main": "2.0.0"}), t.generation)
    assert t.get(1, "D1").versions == {"main": "2.0.0"}
    t.clear()
    assert t.get(1, "D1") is None and len(t) == 0


def test_a_torn_or_foreign_slot_is_a_miss():
    t = SharedStates(1000)
    assert t.put(1, "D1", state(versions={"main": "1.0.0"}), t.generation)
    i = t._slot(hash((1, "D1")) or 1)
    t._words[i + 4] ^= 2  # another writer's word in the middle of this slot
    assert t.get(1, "D1") is None
    assert t.put(1, "D1", state(versions={"main": "1.0.0"}), t.generation)
    other = SharedStates.__new__(SharedStates)  # same memory, a process that never met "1.0.0"
    other.__dict__.update(t.__dict__, _strings={})
    assert other.get(1, "D1") is None
    assert other.get(1, "D1", lambda: ["evt"]) is None  # its project's strings do not name it either
    assert other.get(1, "D1", lambda: ["main", "mp", "1.0.0"]) == state(versions={"main": "1.0.0"})


def test_bounded_by_entries():
    t = SharedStates(5000)
    for n in range(12_000):
        t.put(1, f"D{n}", state(device_id=n + 1), t.generation)
    assert len(t) <= 5000
    assert t.get(1, "D11999").device_id == 12_000


def test_forked_processes_share_states():
    t = SharedStates(1000)
    assert t.put(1, "parent", state(versions={"main": "1.0.0"}), t.generation)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: sees the parent's state, publishes one, invalidates the parent's
        ok = t.get(1, "parent") == state(versions={"main": "1.0.0"})
        ok = ok and t.put(1, "child", state(device_id=8, versions={"main": "1.0.0"}), t.generation)
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(r)
    assert t.get(1, "child").device_id == 8


def test_device_cache_reads_the_shared_table_behind_its_lru():
    shared = SharedStates(1000)
    a, b = DeviceCache(1, shared), DeviceCache(1, shared)  # two workers, one state each
    a.put((1, "D1"), state(), a.token())
    assert b.get((1, "D1")) == state() and b.shared_hits == 1
    tok = b.token()
    a.invalidate((1, "D1"))  # a wrote the device: b's load that overlapped is neither kept nor shared
    b.put((1, "D1"), state(versions={"main": "0.9.0"}), tok)
    assert shared.get(1, "D1") is None


# its premise is a per-worker cache holding both of its devices, one of them with an open action
# (never shared): replaced by the test below for the shared table
del test_steady_state_ddi_poll_makes_no_database_round_trip  # noqa: F821
# counts the per-worker cache's entries, which is one here: the shared table's gauge is checked below
del test_state_loads_and_cached_devices_are_metrics  # noqa: F821


async def test_quiet_devices_poll_from_the_shared_table_without_the_database(released):
    app = released.server.app
    cache = app[DDI_CACHE]
    serials = ("QUIET1", "QUIET2", "QUIET3")
    for serial in serials:
        await config(released, serial, {"memfault__hardware_version": "evt", "memfault__software_type": "main",
                                         "memfault__current_version": "2.0.0"})
    seen = await polled_then_quiet(released, serials)
    loads, hits = cache.loads, cache.shared_hits
    for _ in range(20):
        for serial in serials:  # each poll evicts the last device from the one-entry cache
            body, r = await poll(released, serial)
            assert r.headers["ota-gateway-reason"] == "latest" and "configData" not in body.get("_links", {})
    assert seen == [] and cache.loads == loads and cache.shared_hits >= hits + 59
    metrics = await (await released.get("/metrics")).text()
    assert float(re.search(r"^ota_gateway_ddi_shared_devices (\S+)$", metrics, re.M).group(1)) >= 3
    assert float(re.search(r"^ota_gateway_ddi_shared_hits_total (\S+)$", metrics, re.M).group(1)) >= 59
    # a change made elsewhere reaches the shared table through NOTIFY too
    await app[POOL].execute(
        "UPDATE devices SET ddi_config_requested = true WHERE serial = 'QUIET2';"
        f"SELECT pg_notify('ota_gateway', 'ddi:{app[MIRROR].by_slug[PROJECT].id}:QUIET2:elsewhere')")
    await _quiesce(app)
    body, _ = await poll(released, "QUIET2")
    assert "configData" in body["_links"] and cache.loads == loads + 1


@pytest.fixture
def settings(database_url, data_dir):
    # one state per worker: nearly every poll of the DDI suite takes its state from the shared table
    return Settings(database_url=database_url, data_dir=data_dir, public_url="http://gw.test:8080",
                    flush_interval=0.2, workers=1, ddi_cache_size=1)


def test_clearing_gives_the_pages_back():
    t = SharedStates(200_000)
    for n in range(50_000):
        t.put(1, f"D{n}", state(device_id=n + 1), t.generation)

    def resident_kb() -> int:  # the table is the one mapping of its size in this process
        size_kb = len(t._mm) // 1024
        lines = open("/proc/self/smaps").read().split("\n")
        for i, line in enumerate(lines):
            if line.startswith("Size:") and int(line.split()[1]) == size_kb:
                return next(int(x.split()[1]) for x in lines[i:] if x.startswith("Rss:"))
        raise AssertionError("table mapping not found")

    full = resident_kb()
    t.clear()
    assert t.get(1, "D7") is None and len(t) == 0
    assert resident_kb() < full // 10
    assert t.put(1, "D7", state(device_id=8), t.generation) and t.get(1, "D7").device_id == 8
