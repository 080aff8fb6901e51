"""Upgrades are safe. The last release before numbered migrations (OLD: its schema.sql was
re-applied at every start) runs from a git worktree of this checkout's history, made and removed
here; it fills a database through its HTTP API as a user would; then the current code migrates
that database (`ota-gateway migrate`), serves it, and must answer for all of it: releases and
payload hashes, activations and their percentages, staged devices, overrides, DDI actions and
their feedback, device histories, keys, tokens and users, and approval requests still pending and
approvable. Also here: concurrent starts apply each migration once, and a database taken over
from an old release has exactly the schema of a fresh one."""
from __future__ import annotations

import asyncio
import base64
import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from conftest import ORG, ORG_TOKEN, PROJECT, PROJECT_KEY, create_database
from procs import Gateway, code_env

from gateway.store.db import MIGRATIONS_DIR, apply_schema, migrations

OLD = "5c070d0"  # the last release without numbered migrations (its schema file: /schema.sql)
REPO = Path(__file__).resolve().parent.parent
CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")

O = f"/api/v0/organizations/{ORG}"
P = f"{O}/projects/{PROJECT}"
BOOTSTRAP = {"OTA_ORG": ORG, "OTA_PROJECT": PROJECT, "OTA_ORG_TOKEN": ORG_TOKEN, "OTA_PROJECT_KEY": PROJECT_KEY,
             "OTA_FLUSH_INTERVAL": "0.1"}
USER, USER_SECRET = "approver@example.com", "approver-secret-123"
GW_AUTH = {"Authorization": f"GatewayToken {PROJECT_KEY}"}
# a release's payload bytes, by (version or "from>to", hardware version)
FILES = {(v, hw): f"firmware {v} for {hw} ".encode() * n for v, hw, n in (
    ("1.0.0", "evt", 300), ("1.5.0", "evt", 310), ("2.0.0", "evt", 320), ("2.0.0", "dvt", 330),
    ("3.0.0", "evt", 340), ("1.0.0>2.0.0", "evt", 40))}
# (serial, current version, project key) polled on /latest before and after: the answers must match
MEMFAULT_PROBES = [("H1", "1.5.0", PROJECT_KEY), ("OVR1", "2.0.0", PROJECT_KEY), ("L1", "1.0.0", PROJECT_KEY),
                   ("B1", "2.0.0", PROJECT_KEY), ("B2", "2.0.0", PROJECT_KEY), ("B3", "2.0.0", PROJECT_KEY),
                   ("B4", "1.0.0", PROJECT_KEY), ("D1", "1.0.0", PROJECT_KEY)]
DDI_DEVICES = ("DDI1", "DDI2", "DDI3")


# -- the old release's code ---------------------------------------------------------------------

def _history_problem() -> str | None:
    if shutil.which("git") is None:
        return "git is not installed"
    r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{OLD}^{{commit}}"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return (f"the upgrade test runs release {OLD} from the repository's git history, which {REPO} lacks "
                f"(not a git checkout, or a shallow clone: fetch the full history, e.g. fetch-depth: 0)"
                + (f"; git says: {r.stderr.strip()}" if r.stderr.strip() else ""))
    return None


@pytest.fixture(scope="module")
def old_code():
    """A worktree of release OLD in a temporary directory; the old code is checked to be what
    `python -m gateway` imports there (not this checkout's editable install)."""
    problem = _history_problem()
    if problem:
        if CI:
            pytest.fail(problem + " (CI=true: the upgrade test must run)")
        pytest.skip(problem)
    tmp = tempfile.mkdtemp(prefix="ota-upgrade-")
    path = os.path.join(tmp, f"ota-gateway-{OLD}")
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", path, OLD], check=True,
                   capture_output=True)
    try:
        out = subprocess.run([sys.executable, "-c", "import gateway, gateway.store as s; print(gateway.__file__); "
                              "print(s.__file__); print(s.SCHEMA_PATH)"],
                             cwd=path, env={**os.environ, **code_env(path)}, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        init, store, schema = out.stdout.split()
        print(f"old gateway imported from {init}")
        root = Path(path).resolve()
        assert all(Path(f).resolve().is_relative_to(root) for f in (init, store, schema)), out.stdout
        assert store.endswith("store.py") and Path(schema).name == "schema.sql"  # OLD's layout, not today's
        yield path
    finally:
        r = subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", path], capture_output=True)
        if r.returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
            subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


# -- talking to a gateway -----------------------------------------------------------------------

class Api:
    """The management and device APIs of one running gateway."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str = ORG_TOKEN):
        self.s, self.url, self.auth = session, url, {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, *, expect=(200,), headers=None, **kw):
        async with self.s.request(method, self.url + path, headers=headers or self.auth, **kw) as r:
            text = await r.text()
            assert r.status in expect, f"{method} {path}: {r.status} {text}"
            return r.status, (await r.json() if text and r.content_type == "application/json" else text)

    async def get(self, path: str, **kw):
        return (await self.call("GET", path, **kw))[1]

    async def post(self, path: str, body: dict | None = None, expect=(200, 201), **kw):
        return (await self.call("POST", path, json=body or {}, expect=expect, **kw))[1]

    async def patch(self, path: str, body: dict):
        return (await self.call("PATCH", path, json=body))[1]

    async def upload(self, key: tuple[str, str], sw: str = "main", **fields) -> None:
        """A payload the way memfault-cli uploads it."""
        content, (version, hw) = FILES[key], key
        up = (await self.post(P + "/upload", {"kind": "OTA_PAYLOAD", "size": len(content)}))["data"]
        async with self.s.put(up["upload_url"], data=content) as r:
            assert r.status == 200, await r.text()
        ref: str | list = version.split(">") if ">" in version else version
        await self.post(P + "/releases/ota_payload", {
            "file": {"token": up["token"], "md5": hashlib.md5(content).hexdigest(), "name": "image.swu"},
            "software_version": {"version": ref, "software_type": sw}, "hardware_version": hw, **fields})

    async def latest(self, serial: str, current: str, key: str = PROJECT_KEY, hw: str = "evt"):
        params = {"device_serial": serial, "hardware_version": hw, "software_type": "main",
                  "current_version": current}
        async with self.s.get(self.url + "/api/v0/releases/latest", params=params,
                              headers={"Memfault-Project-Key": key}) as r:
            return r.status, (await r.json() if r.status == 200 else r.headers.get("memfault-reason"))

    def ddi(self, serial: str) -> str:
        return f"/{PROJECT}/controller/v1/{serial}"

    async def ddi_poll(self, serial: str, headers=GW_AUTH, expect=(200,)):
        return (await self.call("GET", self.ddi(serial), headers=headers, expect=expect))[1]

    async def ddi_offered(self, serial: str) -> int:
        href = (await self.ddi_poll(serial))["_links"]["deploymentBase"]["href"]
        return int(re.search(r"/deploymentBase/(\d+)", href).group(1))

    async def ddi_feedback(self, serial: str, action: int, execution: str, finished: str, details: list[str]):
        body = {"id": action, "time": "20260101T000000", "status": {
            "execution": execution, "result": {"finished": finished, "progress": {"cnt": 1, "of": 2}},
            "details": details}}
        await self.post(f"{self.ddi(serial)}/deploymentBase/{action}/feedback", body, expect=(200,), headers=GW_AUTH)

    async def wait_for(self, path: str, predicate, what: str, timeout: float = 10):
        deadline = time.monotonic() + timeout
        while True:
            body = await self.get(path)
            if predicate(body["data"]):
                return body["data"]
            assert time.monotonic() < deadline, f"{what}: {body}"
            await asyncio.sleep(0.05)


def basic(user: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


# -- what a user did with the old release -----------------------------------------------------------

async def fill(url: str) -> dict:
    """Use the old gateway at `url` like a user would; return the secrets it handed out, the ids
    it answered with and what it answered devices and managers."""
    out: dict = {}
    async with aiohttp.ClientSession() as s:
        api = Api(s, url)
        # releases: full ones (one with must-pass-through, notes and extra info, one for two hardware
        # versions) and a delta
        await api.upload(("1.0.0", "evt"))
        await api.upload(("1.5.0", "evt"), must_pass_through=True, notes="bootloader", extra_info={"k": "v"})
        await api.upload(("2.0.0", "evt"))
        await api.upload(("2.0.0", "dvt"))
        await api.upload(("3.0.0", "evt"))
        await api.upload(("1.0.0>2.0.0", "evt"))
        out["signing_key"] = (await api.post(P + "/signing-key"))["data"]
        # cohorts and their settings
        await api.post(P + "/cohorts", {"slug": "beta", "name": "Beta"})
        await api.patch(P + "/cohorts/beta", {"name": "Beta testers", "ddi_polling_interval": 600,
                                              "ddi_update_type": "attempt", "version_checking": False})
        await api.post(P + "/cohorts", {"slug": "locked", "name": "Locked"})
        # activations: normal ones, a delta, a staged rollout, one pulled
        for rel in ("1.0.0", "1.5.0", "2.0.0", ["1.0.0", "2.0.0"]):
            await api.post(P + "/deployments", {"type": "normal", "release": rel, "cohort": "default"})
        await api.post(P + "/deployments", {"type": "normal", "release": "2.0.0", "cohort": "beta"})
        await api.post(P + "/deployments", {"type": "staged_rollout", "release": "3.0.0", "cohort": "beta",
                                            "rollout_percent": 25})
        pulled = (await api.post(P + "/deployments", {"type": "normal", "release": "1.0.0", "cohort": "beta"}))
        await api.call("DELETE", P + f"/deployments/{pulled['data']['id']}")
        locked_v1 = await api.post(P + "/deployments", {"type": "normal", "release": "1.0.0", "cohort": "locked"})
        # devices: provisioned, staged, overridden
        for serial, cohort in (("B1", "beta"), ("B2", "beta"), ("B3", "beta"), ("B4", "beta"), ("OVR1", "default"),
                               ("L1", "locked"), ("H1", "default"), ("D1", "default"), ("DDI1", "default"),
                               ("DDI2", "default"), ("DDI3", "beta")):
            await api.post(P + "/devices", {"device_serial": serial, "hardware_version": "evt", "cohort": cohort})
        staged = await api.post(P + "/cohorts/beta/staging", {"serials": ["B1", "B2"]})
        assert staged["data"]["changed"] == 2
        await api.call("PUT", P + "/devices/OVR1/release-override", json={"release": "1.0.0"})
        # keys, tokens and a user; one of each kind revoked
        out["field_key"] = (await api.post(P + "/project-keys", {"name": "field", "cohort_override": "beta"}))["data"]
        gone = (await api.post(P + "/project-keys", {"name": "gone"}))["data"]
        await api.call("DELETE", P + f"/project-keys/{gone['id']}", expect=(204,))
        out["revoked_key"] = gone["key"]
        out["viewer_token"] = (await api.post(O + "/tokens", {"name": "viewer", "role": "viewer"}))["data"]["token"]
        gone = (await api.post(O + "/tokens", {"name": "gone", "role": "manager"}))["data"]
        await api.call("DELETE", O + f"/tokens/{gone['id']}", expect=(204,))
        out["revoked_token"] = gone["token"]
        await api.post(O + "/users", {"email": USER, "role": "manager", "secret": USER_SECRET})
        # check-ins on the Memfault API: H1's version history
        for version in ("0.9.0", "1.0.0", "1.5.0"):
            assert (await api.latest("H1", version))[0] in (200, 204)
        # DDI devices: DDI1 has an open action it fetched and reported progress on (and a target
        # token), DDI2 a failed one, DDI3 (in beta) a succeeded one
        attrs = {"memfault__hardware_version": "evt", "memfault__software_type": "main"}
        for serial, current in (("DDI1", "1.0.0"), ("DDI2", "1.0.0"), ("DDI3", "1.5.0")):
            await api.ddi_poll(serial)
            await api.call("PUT", api.ddi(serial) + "/configData", headers=GW_AUTH,
                           json={"data": {**attrs, "memfault__current_version": current}})
        actions = {serial: await api.ddi_offered(serial) for serial in DDI_DEVICES}
        await api.call("GET", f"{api.ddi('DDI1')}/deploymentBase/{actions['DDI1']}", headers=GW_AUTH)
        await api.ddi_feedback("DDI1", actions["DDI1"], "proceeding", "none", ["downloading"])
        await api.ddi_feedback("DDI2", actions["DDI2"], "closed", "failure", ["flash failed", "rc=5"])
        await api.ddi_feedback("DDI3", actions["DDI3"], "closed", "success", ["installed"])
        out["ddi_actions"] = actions
        out["target_token"] = (await api.post(P + "/devices/DDI1/ddi/token", {}))["data"]["target_token"]
        # approval: the locked cohort requires it (and is protected); an activation and a
        # deactivation are filed, left pending
        await api.patch(P + "/cohorts/locked", {"requires_approval": True, "protected": True})
        status, req = await api.call("POST", P + "/deployments", expect=(202,),
                                     json={"type": "normal", "release": "2.0.0", "cohort": "locked"})
        out["pending_activate"] = req["data"]
        status, req = await api.call("DELETE", P + f"/deployments/{locked_v1['data']['id']}", expect=(202,))
        out["pending_deactivate"] = req["data"]
        out["answers"] = await device_answers(api, out)
    return out


async def device_answers(api: Api, ctx: dict) -> dict:
    """What devices get: /latest (artifact URLs aside, which name the gateway and expire) and
    the DDI base poll's links, with every key and token a device may use."""
    answers = {}
    for serial, current, key in MEMFAULT_PROBES + [("B3", "2.0.0", ctx["field_key"]["key"])]:
        status, body = await api.latest(serial, current, key)
        if status == 200:
            body = {**body, "artifacts": [{k: v for k, v in a.items() if k != "url"} for a in body["artifacts"]]}
        answers[f"latest {serial} {current} {key[:6]}"] = (status, body)
    auths = {"gateway": GW_AUTH, "target": {"Authorization": f"TargetToken {ctx['target_token']}"}}
    for serial, how in [(s, "gateway") for s in DDI_DEVICES] + [("DDI1", "target")]:
        body = await api.ddi_poll(serial, headers=auths[how])
        answers[f"ddi {serial} {how}"] = {"sleep": body["config"]["polling"]["sleep"],
                                          "links": {k: re.sub(r"^https?://[^/]+", "", v["href"])
                                                    for k, v in body.get("_links", {}).items()}}
    return answers


VIEW_PATHS = [P, P + "/releases", P + "/deployments", P + "/cohorts", P + "/devices?per_page=1000",
              P + "/project-keys", P + "/activation-requests?status=all", P + "/deployment-history",
              P + "/audit-log", P + "/ddi/releases", P + "/signing-key", P + "/software_type_values",
              O + "/tokens", O + "/users", P + "/devices/H1/history", P + "/devices/OVR1", P + "/devices/B1"] + [
             p for s in DDI_DEVICES for p in (P + f"/devices/{s}/ddi", P + f"/devices/{s}/ddi/actions",
                                              P + f"/devices/{s}/history")]


async def management_views(url: str) -> dict:
    async with aiohttp.ClientSession() as s:
        api = Api(s, url)
        return {path: (await api.get(path))["data"] for path in VIEW_PATHS}


def missing(old, new, where: str = "") -> list[str]:
    """Where `new` lacks something `old` had: a key, a list element, a different value. New keys
    (fields the current API added) are fine."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [m for k, v in old.items() for m in
                (missing(v, new[k], f"{where}.{k}") if k in new else [f"{where}.{k}: gone"])]
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{where}: {len(old)} items, now {len(new)}"]
        return [m for i, (a, b) in enumerate(zip(old, new)) for m in missing(a, b, f"{where}[{i}]")]
    return [] if old == new else [f"{where}: {old!r}, now {new!r}"]


# -- the upgrade ----------------------------------------------------------------------------------

CATALOG = {
    "columns": """SELECT table_name, column_name, ordinal_position, data_type, is_nullable, column_default
                  FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2""",
    "constraints": """SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
                      FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
                      WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1, 2""",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2",
    "functions": """SELECT proname, pg_get_functiondef(oid) FROM pg_proc
                    WHERE pronamespace = 'public'::regnamespace ORDER BY 1""",
    "relations": """SELECT relname, relkind, reloptions FROM pg_class
                    WHERE relnamespace = 'public'::regnamespace ORDER BY 1""",
}


async def catalog(url: str) -> dict:
    """The schema as PostgreSQL sees it: columns, constraints, indexes, functions, storage options."""
    conn = await asyncpg.connect(url)
    try:
        return {k: [tuple(tuple(v) if isinstance(v, list) else v for v in r) for r in await conn.fetch(q)]
                for k, q in CATALOG.items()}
    finally:
        await conn.close()


async def differences_from_fresh(pg_cluster: str, name: str, url: str) -> list:
    """How the schema at `url` differs from a fresh database `name` with every migration applied."""
    fresh = await asyncio.to_thread(create_database, pg_cluster, name)
    conn = await asyncpg.connect(fresh)
    try:
        await apply_schema(conn)
    finally:
        await conn.close()
    return schema_differences(await catalog(fresh), await catalog(url))


def schema_differences(a: dict, b: dict) -> str:
    """What one catalog has that the other lacks, by kind; empty when they are the same."""
    return "\n".join(f"{kind}: {sign} {row}" for kind in CATALOG
                     for sign, rows in (("-", set(a[kind]) - set(b[kind])), ("+", set(b[kind]) - set(a[kind])))
                     for row in sorted(rows, key=repr))


async def schema_state(url: str) -> dict:
    conn = await asyncpg.connect(url)
    try:
        return {"ledger_columns": [r[0] for r in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'schema_migrations' "
                    "ORDER BY ordinal_position")],
                "ledger": [(r["version"], r.get("name")) for r in await conn.fetch(
                    "SELECT * FROM schema_migrations ORDER BY version")]
                if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL") else None,
                "request_columns": {r[0] for r in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'activation_requests'")}}
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def upgraded(pg_cluster, old_code, tmp_path_factory):
    """The database the old release made and filled, migrated by `ota-gateway migrate` and
    served by the current code; with what the old release answered."""
    t0 = time.monotonic()
    url = create_database(pg_cluster, "t_upgrade_from_old")
    data_dir = str(tmp_path_factory.mktemp("upgrade-data"))
    old = Gateway(url, data_dir, env=BOOTSTRAP, code=old_code)
    with old:
        before = asyncio.run(fill(old.url))
    assert old.proc.returncode == 0, old.output()
    # check-ins are written behind, and all of them at the latest when the gateway stops: what
    # the old release shows of the database it left is read from a second start
    old = Gateway(url, data_dir, env=BOOTSTRAP, code=old_code)
    with old:
        before["views"] = asyncio.run(management_views(old.url))
    assert old.proc.returncode == 0, old.output()
    before["schema"] = asyncio.run(schema_state(url))
    before["url"] = url
    t_old = time.monotonic() - t0
    out = subprocess.run([sys.executable, "-m", "gateway", "migrate"], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "DATABASE_URL": url, **BOOTSTRAP}, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    new = Gateway(url, data_dir, env=BOOTSTRAP)
    with new:
        yield new, before
    assert new.proc.returncode == 0, new.output()
    print(f"old release filled the database in {t_old:.1f}s; upgrade and checks {time.monotonic() - t0 - t_old:.1f}s")


async def test_the_old_release_made_the_database(upgraded):
    """The old schema, as that release left it: its (empty) ledger without names, requests
    without params; both from the database before the migration."""
    _, before = upgraded
    schema = before["schema"]
    assert schema["ledger_columns"] == ["version", "applied_at"] and schema["ledger"] == []
    assert "params" not in schema["request_columns"]


async def test_migrations_recorded_and_schema_equals_a_fresh_one(upgraded, pg_cluster, old_code):
    _, before = upgraded
    url = before["url"]
    assert (await schema_state(url))["ledger"] == [(v, name) for v, name, _ in migrations()]
    problems = await differences_from_fresh(pg_cluster, "t_upgrade_fresh", url)
    assert not problems, problems
    # an old gateway (re)starting during a rollout re-applies its schema.sql: harmless
    taken_over = await catalog(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute((Path(old_code) / "schema.sql").read_text())
    finally:
        await conn.close()
    problems = schema_differences(taken_over, await catalog(url))
    assert not problems, problems


async def test_management_views_kept_everything(upgraded):
    """Every list and object the old release showed is shown the same now (new fields aside).
    Before the tests below poll devices (last seen) and decide requests."""
    new, before = upgraded
    now = await management_views(new.url)
    problems = [m for path in VIEW_PATHS for m in missing(before["views"][path], now[path], path)]
    assert not problems, "\n".join(problems)


async def test_devices_get_the_same_answers(upgraded):
    new, before = upgraded
    async with aiohttp.ClientSession() as s:
        now = await device_answers(Api(s, new.url), before)
    assert now == before["answers"]


async def test_releases_payloads_activations_devices(upgraded):
    new, before = upgraded
    async with aiohttp.ClientSession() as s:
        api = Api(s, new.url)
        releases = await api.get(P + "/releases")
        hashes, ids = {}, {}
        for rel in releases["data"]:
            name = f"{rel['delta_from']}>{rel['version']}" if rel.get("delta_from") else rel["version"]
            ids[name] = rel["id"]
            for a in rel["artifacts"]:
                hashes[(name, a["hardware_version"])] = a["sha256"]
        assert hashes == {k: hashlib.sha256(v).hexdigest() for k, v in FILES.items()}
        # the bytes themselves, served by the new gateway from the old one's storage
        status, body = await api.latest("D1", "1.5.0")
        assert status == 200 and body["version"] == "2.0.0"
        async with s.get(body["artifacts"][0]["url"]) as r:
            assert r.status == 200 and await r.read() == FILES[("2.0.0", "evt")]
        deployments = (await api.get(P + "/deployments"))["data"]
        got = sorted((d["cohort"]["slug"], d["release"]["delta_from"] or "", d["release"]["version"], d["type"],
                      d["rollout_percent"], d["active"]) for d in deployments)
        assert got == sorted([
            ("default", "", "1.0.0", "normal", 100, True), ("default", "", "1.5.0", "normal", 100, True),
            ("default", "", "2.0.0", "normal", 100, True), ("default", "1.0.0", "2.0.0", "normal", 100, True),
            ("beta", "", "2.0.0", "normal", 100, True), ("beta", "", "3.0.0", "staged_rollout", 25, True),
            ("beta", "", "1.0.0", "normal", 100, False), ("locked", "", "1.0.0", "normal", 100, True)])
        devices = {d["device_serial"]: d for d in (await api.get(P + "/devices?per_page=1000"))["data"]}
        assert {s for s, d in devices.items() if d["staged"]} == {"B1", "B2"}
        assert (await api.get(P + "/devices/OVR1"))["data"]["release_override_id"] == ids["1.0.0"]
        assert (await api.latest("OVR1", "2.0.0"))[1]["version"] == "1.0.0"
        cohorts = {c["slug"]: c for c in (await api.get(P + "/cohorts"))["data"]}
        assert {k: cohorts["beta"][k] for k in ("name", "ddi_polling_interval", "ddi_update_type",
                                                 "version_checking")} == {
            "name": "Beta testers", "ddi_polling_interval": 600, "ddi_update_type": "attempt",
            "version_checking": False}
        assert cohorts["locked"]["requires_approval"] is True and cohorts["locked"]["protected"] is True
        assert (await api.get(P + "/signing-key"))["data"]["public_key"] == before["signing_key"]["public_key"]


async def test_ddi_actions_and_histories(upgraded):
    new, before = upgraded
    actions = before["ddi_actions"]
    async with aiohttp.ClientSession() as s:
        api = Api(s, new.url)
        got = {}
        for serial in DDI_DEVICES:
            rows = (await api.get(P + f"/devices/{serial}/ddi/actions"))["data"]
            assert [a["id"] for a in rows] == [actions[serial]]
            got[serial] = rows[0]
        assert [got[s]["status"] for s in DDI_DEVICES] == ["open", "failed", "succeeded"]
        assert got["DDI2"]["feedback"][-1]["details"] == ["flash failed", "rc=5"]
        assert got["DDI1"]["feedback"][-1]["execution"] == "proceeding"
        # the open action is still offered; the failed release is still not offered again
        assert await api.ddi_offered("DDI1") == actions["DDI1"]
        assert "deploymentBase" not in (await api.ddi_poll("DDI2")).get("_links", {})
        history = (await api.get(P + "/devices/H1/history"))["data"]
        assert [(h["version"], h["previous_version"]) for h in history] == [
            ("1.5.0", "1.0.0"), ("1.0.0", "0.9.0"), ("0.9.0", None)]
        # and the new code keeps writing it
        await api.latest("H1", "2.0.0")
        await api.wait_for(P + "/devices/H1/history", lambda h: len(h) == 4 and h[0]["version"] == "2.0.0",
                           "a check-in after the upgrade")


async def test_keys_tokens_and_users_still_authenticate(upgraded):
    new, before = upgraded
    async with aiohttp.ClientSession() as s:
        api = Api(s, new.url)
        assert (await api.latest("D1", "1.0.0"))[0] == 200
        # D1 on 2.0.0 is up to date in its cohort; the key with a cohort override puts it in beta,
        # where 3.0.0 is offered to staged devices only
        assert await api.latest("D1", "2.0.0") == (204, "latest")
        assert await api.latest("D1", "2.0.0", before["field_key"]["key"]) == (204, "not_staged")
        assert (await api.latest("D1", "1.0.0", before["revoked_key"]))[0] == 403  # Memfault's answer to a bad key
        await api.ddi_poll("DDI1", headers={"Authorization": f"TargetToken {before['target_token']}"})
        await api.ddi_poll("DDI1", headers={"Authorization": f"GatewayToken {before['revoked_key']}"}, expect=(401,))
        viewer = Api(s, new.url, before["viewer_token"])
        await viewer.get(P + "/releases")
        await viewer.call("POST", P + "/cohorts", json={"slug": "nope"}, expect=(403,))
        await Api(s, new.url, before["revoked_token"]).call("GET", P + "/releases", expect=(401,))
        await api.call("GET", P + "/releases", headers=basic(USER, USER_SECRET))
        await api.call("GET", P + "/releases", headers=basic(USER, "wrong-secret-123"), expect=(401,))


async def test_pending_requests_still_pending_and_approvable(upgraded):
    new, before = upgraded
    activate, deactivate = before["pending_activate"], before["pending_deactivate"]
    async with aiohttp.ClientSession() as s:
        api = Api(s, new.url)
        pending = {r["id"]: r for r in (await api.get(P + "/activation-requests"))["data"]}
        assert set(pending) == {activate["id"], deactivate["id"]}
        assert (pending[activate["id"]]["action"], pending[activate["id"]]["release"]["version"]) == ("activate",
                                                                                                      "2.0.0")
        assert await api.latest("L1", "1.0.0") == (204, "latest")
        # not by the identity that filed them; by another one (the user, a manager) it is carried out
        await api.call("POST", P + f"/activation-requests/{activate['id']}/approve", expect=(403,))
        for req in (activate, deactivate):
            done = await api.post(P + f"/activation-requests/{req['id']}/approve", headers=basic(USER, USER_SECRET),
                                  expect=(200,))
            assert done["data"]["status"] == "approved"
        active = {(d["cohort"]["slug"], d["release"]["version"]) for d in (await api.get(P + "/deployments"))["data"]
                  if d["active"]}
        assert ("locked", "2.0.0") in active and ("locked", "1.0.0") not in active
        status, body = await api.latest("L1", "1.0.0")
        assert (status, body["version"]) == (200, "2.0.0")


# -- migrations themselves ------------------------------------------------------------------------

async def lock_is_free(url: str) -> bool:
    """No session holds apply_schema's advisory lock (a session of its own asks: locks are re-entrant)."""
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT pg_try_advisory_lock($1, 0)", 0x07A)
    finally:
        await conn.close()


async def test_concurrent_starts_apply_each_migration_once(pg_cluster):
    url = await asyncio.to_thread(create_database, pg_cluster, "t_upgrade_concurrent")
    conns = [await asyncpg.connect(url) for _ in range(3)]
    try:
        await asyncio.gather(*(apply_schema(c) for c in conns))  # would fail on the ledger's key if applied twice
        rows = await conns[0].fetch("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        assert [(r["version"], r["name"]) for r in rows] == [(v, name) for v, name, _ in migrations()]
        await apply_schema(conns[1])  # nothing left to do
        assert await conns[0].fetch("SELECT version, name, applied_at FROM schema_migrations ORDER BY version") == rows
        assert await lock_is_free(url)
    finally:
        for c in conns:
            await c.close()


async def test_a_database_without_ledger_is_taken_over(pg_cluster, old_code):
    """Tables made by an old release, no schema_migrations table at all: 0001 and the rest are
    applied and recorded, and the schema is that of a fresh database."""
    url = await asyncio.to_thread(create_database, pg_cluster, "t_upgrade_no_ledger")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute((Path(old_code) / "schema.sql").read_text())
        await conn.execute("DROP TABLE schema_migrations")
        await apply_schema(conn)
        rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        assert [tuple(r) for r in rows] == [(v, name) for v, name, _ in migrations()]
    finally:
        await conn.close()
    problems = await differences_from_fresh(pg_cluster, "t_upgrade_fresh2", url)
    assert not problems, problems


async def test_a_ledger_naming_another_migration_is_refused(pg_cluster):
    url = await asyncio.to_thread(create_database, pg_cluster, "t_upgrade_foreign")
    conn = await asyncpg.connect(url)
    try:
        await apply_schema(conn)
        await conn.execute("UPDATE schema_migrations SET name = 'from_another_branch' WHERE version = 2")
        with pytest.raises(RuntimeError, match="from_another_branch"):
            await apply_schema(conn)
        assert await lock_is_free(url)  # released on the way out
    finally:
        await conn.close()


def test_migrations_are_numbered_and_ship_in_the_package():
    found = migrations()
    assert [v for v, _, _ in found] == list(range(1, len(found) + 1)) and found[0][1] == "base"
    assert {p.name for p in MIGRATIONS_DIR.iterdir() if p.suffix == ".sql"} == {p.name for _, _, p in found}
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = data.get("gateway.store", [])
    assert all(any(fnmatch.fnmatch(f"migrations/{p.name}", pat) for pat in patterns) for _, _, p in found), patterns
    assert not (REPO / "gateway" / "schema.sql").exists()
