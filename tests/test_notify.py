"""The NOTIFY vocabulary (domain.notify), table-driven, and what the mirror does with a message
it does not understand (a newer release's, during a rolling upgrade): reload everything."""
from __future__ import annotations

import logging

import pytest
from conftest import PROJECT, wait_mirror

from gateway.appkeys import MIRROR, POOL
from gateway.domain import notify
from gateway.domain.notify import Message
from gateway.store import db as db_store


@pytest.mark.parametrize("built,parsed", [
    (notify.keys(), Message("keys")),
    (notify.project(12), Message("project", 12)),
    (notify.devices(12), Message("devices", 12)),
    (notify.device(12, "SN-1_a"), Message("device", 12, serial="SN-1_a")),
    (notify.cohort_devices(12, 3), Message("cohort-devices", 12, cohort=3)),
    (notify.ddi(12, "SN1", "ab12"), Message("ddi", 12, serial="SN1", origin="ab12")),
])
def test_every_builder_parses_back(built, parsed):
    assert built.startswith(f"{notify.VERSION}/")
    assert notify.parse(built) == parsed


@pytest.mark.parametrize("payload,parsed", [
    # what releases before the versioned format send: still understood
    ("keys", Message("keys")),
    ("project:7", Message("project", 7)),
    ("device:7:SN1", Message("device", 7, serial="SN1")),
    ("devices:7", Message("devices", 7)),
    ("cohort-devices:7:2", Message("cohort-devices", 7, cohort=2)),
    ("ddi:7:SN1:origin", Message("ddi", 7, serial="SN1", origin="origin")),
    ("ddi:7:SN1", Message("ddi", 7, serial="SN1", origin="")),
    ("0/project:7", Message("project", 7)),
])
def test_unversioned_and_older_messages_are_understood(payload, parsed):
    assert notify.parse(payload) == parsed


@pytest.mark.parametrize("payload", [
    f"{notify.VERSION + 1}/project:7",    # a newer release
    "2/keys", "x/project:7", "1/",  "", "1/rollout:7", "rollout:7",  # unknown kinds
    "project", "project:x", "project:7:8", "device:7", "cohort-devices:7:x", "1/device:7:a:b",
    "١/project:7",  # a non-ASCII digit
])
def test_what_is_not_understood_parses_to_none(payload):
    assert notify.parse(payload) is None


async def test_a_message_not_understood_makes_the_mirror_reload_everything(client, caplog):
    app = client.server.app
    mirror = app[MIRROR]
    before = mirror.reconnects
    pid = mirror.by_slug[PROJECT].id
    # a change the process was not told about in a way it understands: only a full reload sees it
    async with app[POOL].acquire() as conn:
        await conn.execute("UPDATE projects SET poll_limit_per_minute = 77 WHERE id = $1", pid)
        await db_store.notify(conn, f"{notify.VERSION + 1}/rollout:{pid}:9")
    caplog.set_level(logging.WARNING, logger="gateway.memory.mirror")
    await wait_mirror(client, lambda view: mirror.reconnects > before)
    assert mirror.reconnects == before + 1  # per-device caches drop everything with it
    assert mirror.by_slug[PROJECT].poll_limit == 77
    assert any("not understood" in r.message for r in caplog.records)
    async with app[POOL].acquire() as conn:
        await conn.execute("UPDATE projects SET poll_limit_per_minute = NULL WHERE id = $1", pid)
        await db_store.notify(conn, notify.project(pid))
