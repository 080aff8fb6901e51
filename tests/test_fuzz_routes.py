"""No 5xx caused by request content: hypothesis drives the in-process app over every route family
(DDI and Memfault device routes, artifact downloads, the dashboard's forms, the management API)
with wrongly typed, huge, deeply nested, non-finite, unicode and control-character input.

For every request: the status is below 500, the connection is not dropped, the body carries no
SQL or internals, and a 400 of a JSON API names the offending field; the server log holds no
stack trace. Examples are drawn up front (derandomized, bounded) and sent in one event loop, and
every failure is reported, not only the first."""
from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterable
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from conftest import ORG, ORG_TOKEN, P, PROJECT, PROJECT_KEY, auth_headers, deploy, upload_release
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from yarl import URL

from gateway.appkeys import MIRROR

A = auth_headers()
KEY = {"Memfault-Project-Key": PROJECT_KEY}
GW = {"Authorization": f"GatewayToken {PROJECT_KEY}"}
O = f"/api/v0/organizations/{ORG}"
UI = f"/ui/p/{PROJECT}"
DDI = f"/{PROJECT}/controller/v1"
POLL = {"device_serial": "FZ1", "hardware_version": "fz-hw", "software_type": "fz"}
CONTENT = bytes(range(256)) * 64
INTERNALS = ("asyncpg", "traceback", "select ", "insert into", "violates", "constraint", 'relation "',
             "syntax error", "query argument", "psycopg", "postgres", "sqlstate", 'file "/')
N = 120  # random examples per family, besides the explicit ones
# header text the client can send (it refuses control characters itself; raw ones are sent below)
header_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=60)


def examples(strategy, n: int = N) -> list:
    """`n` values of a strategy, the same on every run (derandomized, no example database)."""
    out: list = []

    @settings(max_examples=n, deadline=None, derandomize=True, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value):
        out.append(value)

    collect()
    return out


# -- values --------------------------------------------------------------------------------------------------

DEEP_OBJECT = '{"a":' * 10_000 + "1" + "}" * 10_000
DEEP_LIST = "[" * 10_000 + "]" * 10_000
# raw JSON texts: wrong types for any field, numbers no field can hold, unicode digits, NUL
WEIRD = ["[]", '["manager"]', "{}", '{"a": {"b": [1]}}', "true", "false", "0", "-1", "1" + "0" * 400,
         "-" + "9" * 30, "18446744073709551616", "1" + "0" * 5000, "1.5", "1e400", "-1e400", "NaN",
         "Infinity", "-Infinity", '"\u00b2"', '"\u0663"', '"\u00b9\u00b2\u00b3"', '""', '"\\u0000"',
         '"a\\u0000b"', '"' + "x" * 5000 + '"', "null", '"\\ud800"', '"caf\u00e9 \U0001f600"', '"a\\r\\nb"',
         '"  "', "[" * 40 + "]" * 40, DEEP_LIST, DEEP_OBJECT, '[1, "x", null, {"y": 1}]']

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)
raw_json = st.one_of(st.sampled_from(WEIRD), json_values.map(lambda v: json.dumps(v, ensure_ascii=False)))

HOLE = "\x01FUZZ\x01"


def with_field(base: dict, path: tuple[str, ...], raw: str | None) -> bytes:
    """`base` as JSON with the field at `path` replaced by the raw JSON text (removed if None)."""
    doc = orjson.loads(orjson.dumps(base))
    node = doc
    for k in path[:-1]:
        node = node.setdefault(k, {}) if isinstance(node.get(k), dict) or k not in node else node[k]
    if raw is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = HOLE
    return orjson.dumps(doc).replace(orjson.dumps(HOLE), (raw or "").encode("utf-8", "surrogatepass"))


# -- checking an answer ----------------------------------------------------------------------------------------

class Findings:
    """Every violation seen, reported together at the end of a test."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.sent = 0

    async def send(self, client, method: str, url, *, names: Iterable[str] = (), json_api: bool = True,
                   **kw) -> aiohttp.ClientResponse | None:
        """Send one request and check its answer; `names`: words of which a 400's message must hold one."""
        self.sent += 1
        label = f"{method} {str(url)[:160]} {repr(kw)[:300]}"
        try:
            r = await client.request(method, url, allow_redirects=False, **kw)
            body = await r.read()
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
            self.items.append(f"dropped connection ({type(e).__name__}: {e}) on {label}")
            return None
        self.check(r, body, label, names, json_api)
        return r

    def check(self, r, body: bytes, label: str, names: Iterable[str], json_api: bool) -> None:
        text = body.decode("utf-8", "replace")
        if r.status >= 500:
            self.items.append(f"{r.status} on {label}: {text[:300]}")
        low = re.sub(r"<[^>]*>", "", text).lower()  # HTML's own <select> is no SQL
        leaked = [w for w in INTERNALS if w in low]
        if leaked:
            self.items.append(f"internals {leaked} in the answer to {label}: {text[:300]}")
        names = [n for n in names if n]
        if json_api and r.status in (400, 422) and names:
            if r.content_type != "application/json":
                self.items.append(f"{r.status} without a JSON body on {label}: {text[:200]}")
                return
            message = orjson.loads(body)["error"]["message"]
            if not any(n.lower() in message.lower() for n in names):
                self.items.append(f"{r.status} message {message[:200]!r} names none of {names} on {label}")

    def check_raw(self, answer: bytes, label: str) -> None:
        """Check an answer read off a raw socket: a status line below 500, and nothing internal."""
        self.sent += 1
        if not answer.startswith(b"HTTP/1."):
            self.items.append(f"dropped connection on raw {label}: {answer[:80]!r}")
            return
        status = int(answer.split(b" ", 2)[1])
        head, _, body = answer.partition(b"\r\n\r\n")
        if status >= 500:
            self.items.append(f"{status} on raw {label}: {answer[:300]!r}")
        low = re.sub(r"<[^>]*>", "", body.decode("utf-8", "replace")).lower()
        if any(w in low for w in INTERNALS):
            self.items.append(f"internals in the answer to raw {label}: {body[:300]!r}")

    def assert_clean(self, caplog, minimum: int) -> None:
        traces = [f"{rec.name} {rec.levelname}: {rec.getMessage()[:200]}" for rec in caplog.records
                  if rec.exc_info or rec.levelno >= logging.ERROR]
        assert not self.items and not traces, "\n".join(self.items[:60] + traces[:20])
        assert self.sent >= minimum, self.sent


@pytest.fixture
async def released(client):
    """A release of software type `fz` active in `default`, and a DDI action of device FZ-DDI."""
    if not any(r.version == "1.0.0" for r in client.server.app[MIRROR].by_slug[PROJECT].releases.values()):
        await upload_release(client, CONTENT, version="1.0.0", software_type="fz", hardware_version="fz-hw",
                             name="fw.bin")
        await deploy(client, "1.0.0")
    return client


async def ddi_action(client, serial: str) -> int:
    """The open action a DDI device gets for the active release (configData first)."""
    base = f"{DDI}/{serial}"
    r = await client.put(base + "/configData", headers=GW, json={"mode": "merge", "data": {
        "memfault__hardware_version": "fz-hw", "memfault__software_type": "fz",
        "memfault__current_version": "0.0.1"}})
    assert r.status == 200, await r.text()
    doc = await (await client.get(base, headers=GW)).json()
    return int(doc["_links"]["deploymentBase"]["href"].split("/deploymentBase/")[1].split("?")[0])


async def download_path(client) -> str:
    r = await client.get("/api/v0/releases/latest/url", params=POLL, headers=KEY)
    assert r.status == 200, await r.text()
    return (await r.text()).split("gw.test:8080", 1)[1]


# -- device routes: DDI ------------------------------------------------------------------------------------

FEEDBACK = {"status": {"execution": "closed", "result": {"finished": "success", "progress": {"cnt": 1, "of": 2}},
                       "code": 0, "details": ["ok"]}}
FEEDBACK_FIELDS = [("status",), ("status", "execution"), ("status", "result"), ("status", "result", "finished"),
                   ("status", "result", "progress"), ("status", "code"), ("status", "details"), ("id",), ("time",)]
CONFIG = {"mode": "merge", "data": {"memfault__hardware_version": "fz-hw", "memfault__software_type": "fz"}}
CONFIG_FIELDS = [("mode",), ("data",), ("data", "memfault__hardware_version"), ("data", "memfault__current_version"),
                 ("data", "x" * 200), ("data", "\u00b2"), ("data", "a\x00b"), ("id",)]
WHOLE = ["", "   ", "null", "[]", "1", '"x"', "[1, 2]", DEEP_LIST, DEEP_OBJECT, "{", '{"status": }', "\xff\xfe",
         '{"status": {"execution": "closed", "result": {"finished": "success"}}, "x": NaN}',
         '{"status": {"execution": "proceeding", "result": {"finished": "none", "progress": {"cnt": '
         + "9" * 400 + "}}}}", '{"data": {"a": "b\nc"}}']


def ddi_bodies(fields):
    one = st.tuples(st.sampled_from(fields), st.one_of(st.none(), raw_json))
    return st.one_of(one, st.sampled_from(WHOLE).map(lambda w: (None, w)))


def keys_in(raw: str) -> set[str]:
    return set(re.findall(r'"([^"\\]{1,64})"\s*:', raw[:2000]))


def ddi_field_names(path, fields, raw: str) -> list[str]:
    """A body-wide problem may name any field of the endpoint (the one missing, say) or of the body."""
    every = sorted({k for p in fields for k in p} | keys_in(raw) | {"request body"})
    return every if path is None else [".".join(path), path[-1], path[0], "request body"]


async def test_ddi_feedback_and_config_bodies(released, caplog):
    f = Findings()
    action = await ddi_action(released, "FZ-DDI")
    cases = [(("status", "code"), "1" + "0" * 400), (("status", "result", "progress"), DEEP_OBJECT)]
    for path, raw in cases + examples(ddi_bodies(FEEDBACK_FIELDS)):
        body = raw.encode("utf-8", "surrogatepass") if path is None else with_field(FEEDBACK, path, raw)
        for url in (f"{DDI}/FZ-DDI/deploymentBase/{action + 1000}/feedback",
                    f"{DDI}/FZ-DDI/cancelAction/{action}/feedback"):
            await f.send(released, "POST", url, names=ddi_field_names(path, FEEDBACK_FIELDS, raw or ""), data=body,
                         headers={**GW, "Content-Type": "application/json"})
    for path, raw in examples(ddi_bodies(CONFIG_FIELDS)):
        body = raw.encode("utf-8", "surrogatepass") if path is None else with_field(CONFIG, path, raw)
        await f.send(released, "PUT", f"{DDI}/FZ-DDI2/configData", data=body,
                     names=ddi_field_names(path, CONFIG_FIELDS, raw or ""),
                     headers={**GW, "Content-Type": "application/json"})
    f.assert_clean(caplog, 2 * N)


AUTHS = ["", "GatewayToken", "GatewayToken ", f"GatewayToken  {PROJECT_KEY}", f"gatewaytoken {PROJECT_KEY}",
         "TargetToken", "TargetToken " + "x" * 6000, "TargetToken \u00b2\u00b2", "Bearer " + ORG_TOKEN,
         "Basic !!!", f"GatewayToken {PROJECT_KEY}\u00e9", "GatewayToken \t" + PROJECT_KEY]


async def test_ddi_headers_and_paths(released, caplog):
    f = Findings()
    action = await ddi_action(released, "FZ-HDR")
    auths = AUTHS + examples(header_text, N)
    tails = ["", "/deploymentBase/" + str(action), "/deploymentBase/" + str(action) + "?actionHistory=" + "9" * 40,
             "/deploymentBase/%C2%B2", "/cancelAction/" + "9" * 30, "/installedBase/-1",
             "/deploymentBase/1?actionHistory=%C2%B2", "/softwaremodules/" + "9" * 40 + "/artifacts",
             "/installedBase/" + str(action) + "?actionHistory=-" + "9" * 400]
    for i, auth in enumerate(auths):
        await f.send(released, "GET", URL(f"{DDI}/FZ-HDR{tails[i % len(tails)]}", encoded=True),
                     json_api=False, headers={"Authorization": auth})
    for tail in tails:
        await f.send(released, "GET", URL(f"{DDI}/FZ-HDR{tail}", encoded=True), headers=GW,
                     names=["actionId", "actionHistory", "softwareModuleId"])
    f.assert_clean(caplog, N)


# -- device routes: Memfault ---------------------------------------------------------------------------------

QUERY_KEYS = ["device_serial", "device_id", "hardware_version", "software_type", "current_version", "extra"]
ODD_QUERIES = ["device_serial=FZ2&hardware_version=fz-hw&software_type=fz&current_version=%C2%B2",
               "device_serial=FZ2&hardware_version=fz-hw&software_type=fz&current_version=%00",
               "device_serial=FZ2&hardware_version=fz%FF&software_type=fz",
               "device_serial=FZ%2B2&hardware_version=fz-hw&software_type=fz",
               "device_serial=FZ2&device_serial=FZ3&hardware_version=fz-hw&software_type=fz",
               "device_serial=FZ2;hardware_version=fz-hw;software_type=fz", "=&=&&&", "%", "%%%",
               "device_serial=FZ2&hardware_version=fz-hw&software_type=fz&current_version=" + "9" * 4000,
               "device_serial=FZ2&hardware_version=fz-hw&software_type=fz&current_version=1.0.0%0D%0A",
               "device_serial=FZ2&hardware_version=%C0%AE%C0%AE&software_type=fz",
               "device_serial=%2541&hardware_version=fz-hw&software_type=fz",
               "device_serial=FZ2&hardware_version=fz-hw&software_type=%EF%BF%BD",
               "device_serial=FZ2&hardware_version=fz-hw&software_type=fz#frag",
               "device_serial=FZ2&hardware_version=+&software_type=fz&current_version=+1.0.0"]


async def test_memfault_query_strings(released, caplog):
    f = Findings()
    values = st.one_of(st.sampled_from(["FZ2", "fz-hw", "fz", "1.0.0", "0.0.1", "\u00b2", "\u0663.1.0", "", " ",
                                        "1.0.0-rc.1+build", "9" * 200, "a\x00b", "\U0001f600", "1..0"]),
                       st.text(max_size=20))
    queries = examples(st.dictionaries(st.sampled_from(QUERY_KEYS), values, max_size=6))
    for i, q in enumerate(queries):
        path = "/api/v0/releases/latest" + ("/url" if i % 2 else "")
        await f.send(released, "GET", path, params=q, headers=KEY, names=QUERY_KEYS)
    for i, raw in enumerate(ODD_QUERIES):
        path = "/api/v0/releases/latest" + ("/url" if i % 2 else "")
        await f.send(released, "GET", URL(f"{path}?{raw}", encoded=True), headers=KEY, names=QUERY_KEYS + ["query string"])
    f.assert_clean(caplog, N)


# -- artifact downloads --------------------------------------------------------------------------------------

DATES = ["Fri, 31 Dec 9999 23:59:59 GMT", "Sat, 01 Jan 99999 00:00:00 GMT", "Mon, 01 Jan 0001 00:00:00 GMT",
         "Thu, 01 Jan 1970 00:00:00 GMT", "Wed, 32 Dec 2020 25:61:61 GMT", "Mon, 99999999999999999999 Jan 2020 "
         "00:00:00 GMT", "Mon, 01 Jan 2020 00:00:00 +9999", "Mon, 01 Jan 2020 00:00:00 -0000", "garbage", "",
         "1" * 400, "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "Sun Nov  6 08:49:37 99999",
         "Mon, 01 Jan 2020 99999999999999999999:00:00 GMT", "\u00b2\u00b2, 01 Jan 2020", '"etag"', "W/\"x\"", "*",
         "Mon, 01 Jan 2020 00:00:00 GMT, Tue, 02 Jan 2020 00:00:00 GMT"]
RANGES = ["bytes=0-0,0-0,0-0", "bytes=0-10,5-20", "bytes=-1", "bytes=-" + "9" * 30, "bytes=" + "9" * 30 + "-",
          "bytes=0-" + "9" * 30, "bytes=-0", "bytes=0--1", "bytes=1-0", ",".join(["bytes=0-1"] + ["2-3"] * 500),
          "bytes=0-1,\u00b2-3", "items=0-1", "bytes = 0-1", "bytes=0-1, -5, 10-", "bytes=99999999999999999-",
          "bytes=-9223372036854775808", "bytes=" + ",".join(["-"] * 50)]
COND = ["If-Modified-Since", "If-Unmodified-Since", "If-Range", "If-None-Match", "If-Match", "Range",
        "Accept-Encoding"]


async def test_artifact_conditional_and_range_headers(released, caplog):
    f = Findings()
    url = await download_path(released)
    header_values = st.one_of(st.sampled_from(DATES + RANGES), header_text)
    cases = [{"If-Modified-Since": d} for d in DATES] + [{"If-Unmodified-Since": d} for d in DATES] + [
        {"If-Range": d, "Range": "bytes=0-9"} for d in DATES] + [{"Range": r} for r in RANGES]
    cases += examples(st.dictionaries(st.sampled_from(COND), header_values, min_size=1, max_size=4))
    for i, headers in enumerate(cases):
        await f.send(released, "HEAD" if i % 7 == 0 else "GET", url, headers=headers,
                     names=[*headers, "range", "date"])
    f.assert_clean(caplog, N)


# -- the dashboard -------------------------------------------------------------------------------------------

CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')


async def login_csrf(client) -> str:
    r = await client.get("/ui/login")
    assert r.status == 200
    return CSRF_RE.search(await r.text()).group(1)


NEXTS = ["/ui/\r\nSet-Cookie: x=1", "/ui/\nX: y", "/ui/\r", "/ui/\x00", "/ui/\x7f", "/ui/\t", "/ui/ a",
         "/ui/\u2028", "/ui/\u00e9", "//evil.example/", "/ui/\\evil", "https://evil.example/", "/ui/%0d%0aX:%20y"]


async def test_login_next_with_control_characters_is_sanitized(client, caplog):
    f = Findings()
    for nxt in NEXTS:
        csrf = await login_csrf(client)
        r = await f.send(client, "POST", "/ui/login", json_api=False,
                         data={"_csrf": csrf, "email": "", "secret": ORG_TOKEN, "next": nxt})
        if r is not None:
            location = r.headers.get("Location", "")
            assert r.status in (303, 400), (nxt, r.status)
            assert location.startswith("/ui/") and location.isprintable() and " " not in location, (nxt, location)
            assert not location.startswith("//"), location
        await f.send(client, "GET", "/ui/login", params={"next": nxt}, json_api=False)
    f.assert_clean(caplog, len(NEXTS))


def form_values():
    text = st.one_of(st.sampled_from(["", "yes", "1", "0", "-1", "\u00b2", "\u0663", "9" * 40, "1.5", "x" * 5000,
                                      "a\x00b", "\r\n", "/ui/\r\nX: y", "default", "\U0001f600"]),
                     st.text(max_size=20))
    return st.one_of(text, st.lists(text, min_size=2, max_size=3))


def form_of(fields: dict) -> aiohttp.FormData:
    """Form data with repeated fields for list values (what `request.post()` must cope with)."""
    fd = aiohttp.FormData()
    for k, v in fields.items():
        for item in v if isinstance(v, list) else [v]:
            fd.add_field(k, item)
    return fd


LOGIN_FIELDS = ["_csrf", "email", "secret", "next", "x"]


async def test_login_form_before_login(client, caplog):
    f = Findings()
    forms = examples(st.dictionaries(st.sampled_from(LOGIN_FIELDS), form_values(), max_size=4))
    for i, fields in enumerate(forms):
        if i % 2:  # half with a valid CSRF token, to reach the credential check
            fields = {**fields, "_csrf": await login_csrf(client)}
        await f.send(client, "POST", "/ui/login", json_api=False, data=form_of(fields))
    # a file part, a huge form, a JSON body instead of a form
    csrf = await login_csrf(client)
    fd = aiohttp.FormData()
    fd.add_field("_csrf", csrf)
    fd.add_field("secret", b"\xff\x00binary", filename="s.bin", content_type="application/octet-stream")
    await f.send(client, "POST", "/ui/login", json_api=False, data=fd)
    await f.send(client, "POST", "/ui/login", json_api=False, data={"_csrf": csrf, "secret": "x" * (3 << 20)})
    await f.send(client, "POST", "/ui/login", json_api=False, json={"_csrf": csrf, "secret": [1]})
    f.assert_clean(caplog, N)


UI_FORMS = [  # (path, fields the form posts)
    ("/deployments", ["release_id", "cohort", "percent", "confirm", "back"]),
    ("/deployments/{dep}/rollout", ["percent", "confirm", "back"]),
    ("/deployments/{dep}/abort", ["confirm", "back"]),
    ("/requests/{req}/approve", []), ("/requests/{req}/reject", []),
    ("/devices/FZ-DDI/actions/{act}/retry", []),
]
IDS = [quote(i, safe="%") for i in ["1", "\u00b2", "\u0663", "9" * 30, "-1", "0", "1.0", "%C2%B2", "%00", "x"]]


async def test_dashboard_forms_after_login(released, caplog):
    f = Findings()
    csrf = await login_csrf(released)
    r = await released.post("/ui/login", data={"_csrf": csrf, "secret": ORG_TOKEN}, allow_redirects=False)
    assert r.status == 303
    csrf = CSRF_RE.search(await (await released.get(UI + "/releases")).text()).group(1)
    rel_id = str(next(iter(released.server.app[MIRROR].by_slug[PROJECT].releases.values())).id)
    forms = examples(st.tuples(st.sampled_from(UI_FORMS), st.sampled_from(IDS + [rel_id]),
                               st.dictionaries(st.sampled_from(["release_id", "cohort", "percent", "confirm",
                                                                "back", "_csrf", "x"]), form_values(), max_size=5)),
                     2 * N)
    for (path, _names), raw_id, fields in forms:
        url = UI + path.format(dep=raw_id, req=raw_id, act=raw_id)
        if "_csrf" not in fields:
            fields = {**fields, "_csrf": csrf}
        if fields.get("confirm") == "yes":  # keep the release active for the other examples
            fields["confirm"] = "no"
        await f.send(released, "POST", URL(url, encoded=True), json_api=False, data=form_of(fields))
    for raw_id in IDS:  # the read pages take the same ids and numbers
        for page in (f"/releases/{raw_id}", f"/devices?page={raw_id}", f"/audit?before={raw_id}",
                     f"/requests?status={raw_id}", f"/cohorts/{raw_id}"):
            await f.send(released, "GET", URL(UI + page, encoded=True), json_api=False)
    f.assert_clean(caplog, 2 * N)


# -- the management API --------------------------------------------------------------------------------------

MGMT = [  # (method, path, a valid body, the fields to break)
    ("POST", O + "/users", {"email": "fz@example.com", "role": "viewer", "secret": "fuzz-secret-0123"},
     ["email", "role", "secret"]),
    ("POST", O + "/tokens", {"name": "fz", "role": "viewer", "can_activate_protected": False},
     ["name", "role", "can_activate_protected"]),
    ("POST", P + "/cohorts", {"slug": "fz", "name": "Fz"}, ["slug", "name"]),
    ("PATCH", P + "/cohorts/fz", {"name": "Fz"},
     ["name", "version_checking", "protected", "requires_approval", "ddi_polling_interval", "ddi_update_type"]),
    ("POST", P + "/cohorts/fz/staging", {"staged": True, "limit": 1},
     ["staged", "serials", "limit", "order", "current_version", "software_type", "hardware_version"]),
    ("POST", P + "/devices", {"device_serial": "FZD1", "hardware_version": "fz-hw", "cohort": "fz"},
     ["device_serial", "hardware_version", "cohort"]),
    ("PATCH", P + "/devices/FZD1", {"cohort": "fz"}, ["cohort"]),
    ("PUT", P + "/devices/FZD1/release-override", {"release": "1.0.0", "software_type": "fz"},
     ["release", "software_type"]),
    ("POST", P + "/deployments", {"type": "normal", "release": "1.0.0", "cohort": "fz", "software_type": "fz"},
     ["type", "release", "cohort", "rollout_percent", "software_type"]),
    ("POST", P + "/upload", {"kind": "OTA_PAYLOAD", "size": 10}, ["kind", "size"]),
    ("POST", P + "/releases/ota_payload", {
        "file": {"token": "up_none", "md5": "0" * 32, "name": "f.bin"},
        "software_version": {"version": "2.0.0", "software_type": "fz", "revision": "r"},
        "hardware_version": "fz-hw", "must_pass_through": False, "notes": "", "extra_info": {"a": "b"}},
     ["file", "file.token", "file.md5", "file.name", "software_version", "software_version.version",
      "software_version.software_type", "software_version.revision", "hardware_version", "must_pass_through",
      "notes", "extra_info", "firmware_type"]),
    ("PATCH", P + "/releases/1.0.0", {"notes": "n"}, ["notes", "revision", "extra_info"]),
    ("POST", P + "/project-keys", {"name": "fz"}, ["name", "cohort_override"]),
    ("POST", P + "/devices/FZD1/ddi/token", {"token": "t" * 20}, ["token"]),
    ("PATCH", P, {"poll_limit_per_minute": None},
     ["strict_semver", "ddi_software_type", "ddi_hardware_version", "poll_limit_per_minute"]),
]


async def test_management_bodies_with_wrong_types(released, caplog):
    f = Findings()
    for method, path, body, _ in MGMT[:6]:  # the objects the other bodies name
        await released.request(method, path, json=body, headers=A)
    explicit = [(1, "role", '["manager"]'), (0, "role", '{"a": 1}'), (10, "file.md5", "12345"),
                (10, "software_version.version", '"\u00b2"'), (10, "software_version.version", '["\u00b2", "1"]'),
                (8, "rollout_percent", "true"), (9, "size", "true"), (9, "size", "1" + "0" * 400),
                (3, "ddi_polling_interval", "1e400"), (7, "release", '"\u00b2"'), (7, "release", "99" * 20),
                (4, "limit", "NaN"), (2, "slug", DEEP_OBJECT)]
    drawn = examples(st.integers(0, len(MGMT) - 1).flatmap(lambda i: st.tuples(
        st.just(i), st.sampled_from(MGMT[i][3]), st.one_of(st.none(), raw_json))), 3 * N)
    for n, (i, field, raw) in enumerate(explicit + drawn):
        method, path, body, fields = MGMT[i]
        names = [field, field.rsplit(".", 1)[-1], "request body"]
        if n >= len(explicit):  # a drawn value may be valid: then another field may be the offending one
            names += fields + list(keys_in(raw or ""))
        await f.send(released, method, path, data=with_field(body, tuple(field.split(".")), raw), names=names,
                     headers={**A, "Content-Type": "application/json"})
    ids = [quote(i, safe="%") for i in ["\u00b2", "\u0663", "9" * 30, "-1", "1.5", "%C2%B2", "0x10", "1_0"]]
    for raw_id in ids:
        for method, path in (("DELETE", P + f"/deployments/{raw_id}"), ("DELETE", O + f"/tokens/{raw_id}"),
                             ("DELETE", P + f"/project-keys/{raw_id}"), ("GET", P + f"/releases/{raw_id}"),
                             ("POST", P + f"/activation-requests/{raw_id}/approve"),
                             ("POST", P + f"/devices/FZD1/ddi/actions/{raw_id}/retry"),
                             ("GET", P + f"/devices?page={raw_id}"), ("GET", P + f"/devices?per_page={raw_id}"),
                             ("GET", P + f"/audit-log?before={raw_id}"), ("GET", P + f"/audit-log?limit={raw_id}")):
            await f.send(released, method, URL(path, encoded=True), headers=A,
                         names=["id", "page", "per_page", "before", "limit", "action_id", "request", "deployment"])
    # what the bodies may have changed must not leak into the other modules' tests
    await released.patch(P, json={"strict_semver": False, "ddi_gateway_token": True}, headers=A)
    f.assert_clean(caplog, 3 * N)


# -- bytes no HTTP client library sends ----------------------------------------------------------------------

async def raw_exchange(client, request: bytes) -> bytes:
    """Send bytes as they are and read what comes back (b"" for a connection closed unanswered)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(1 << 16), 10)
    finally:
        writer.close()


RAW_HEADERS = [b"Authorization: GatewayToken \x7f" + PROJECT_KEY.encode(), b"Authorization: GatewayToken a\x00b",
               b"Authorization: TargetToken \xff\xfe", b"If-Modified-Since: Mon, 01 Jan 2020\x0b 00:00:00 GMT",
               b"Range: bytes=0-1\x00", b"X-Odd: a\rb", b"If-Range: \x80\x81"]
RAW_TARGETS = [b"/" + PROJECT.encode() + b"/controller/v1/FZ-RAW/deploymentBase/\xd9\xa3",
               b"/api/v0/releases/latest?device_serial=\xff&hardware_version=fz-hw&software_type=fz",
               b"/ui/login?next=/ui/\x00", b"/api/v0/organizations/" + ORG.encode() + b"/projects/\xc2\xb2"]


async def test_raw_control_bytes_in_headers_and_request_lines(released, caplog):
    f = Findings()
    url = (await download_path(released)).encode()
    for header in RAW_HEADERS:
        for target in (url, f"{DDI}/FZ-RAW".encode()):
            answer = await raw_exchange(released, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + header
                                        + b"\r\nConnection: close\r\n\r\n")
            f.check_raw(answer, repr(header))
    for target in RAW_TARGETS:
        answer = await raw_exchange(released, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        f.check_raw(answer, repr(target))
    assert (await released.get("/healthz")).status == 200
    f.assert_clean(caplog, 0)


async def test_preconditions_read_dates_safely(released):
    """If-Unmodified-Since and If-Match are evaluated (412), through the same date parser as
    If-Modified-Since and If-Range; a date that is not one makes its condition absent."""
    url = await download_path(released)
    etag = (await released.head(url)).headers["ETag"]
    assert (await released.get(url, headers={"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})).status == 412
    for ok in ("Fri, 31 Dec 9999 23:59:59 GMT", "Sat, 01 Jan 99999 00:00:00 GMT", "garbage"):
        assert (await released.get(url, headers={"If-Unmodified-Since": ok})).status == 200, ok
    r = await released.get(url, headers={"If-Match": etag})
    assert r.status == 200, (etag, await r.text())
    r = await released.get(url, headers={"If-Match": f"W/{etag}"})
    assert r.status == 412 and "If-Match" in (await r.json())["error"]["message"]
    # a future If-Modified-Since is no validator: the body, not a 304
    assert (await released.get(url, headers={"If-Modified-Since": "Fri, 31 Dec 9999 23:59:59 GMT"})).status == 200
