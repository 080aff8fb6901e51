"""One deterministic scenario for the record/replay test (tests/test_replay.py).

`run(client)` drives the in-process gateway like a release manager and a fleet would: uploads
and releases, deployments and staged rollouts, cohorts, devices, keys, tokens, approvals, the
Memfault and hawkBit DDI device APIs, and the error answers around them. It returns one dict per
HTTP exchange; `mask(exchange)` replaces what legitimately differs from one run to the next
(times, generated secrets, URL signatures, key material) so that two runs, before and after a
refactor, compare equal.

Rules that keep it deterministic:
- a fresh database (conftest gives each test module one), and check-ins written when the
  scenario says so: after every device request it waits for the write-behind
  (`app[CHECKINS].flush()`), so what the management API answers about devices, versions and
  history never depends on when a background flush ran (test_replay.py also pushes the
  periodic flush out of the way);
- no rollout percentage between 1 and 99 except where only counts are looked at (which devices
  a percentage stages is random), no rate limits (their windows turn with the clock), no sleeps;
- only `gateway.appkeys` is imported from the gateway (it survives the package refactor);
  everything else goes over HTTP.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from typing import Any
from urllib.parse import urlencode

from conftest import ORG, ORG_TOKEN, PROJECT, PROJECT_KEY, P

PUBLIC = "http://gw.test:8080"
O = f"/api/v0/organizations/{ORG}"
LATEST = "/api/v0/releases/latest"
HEADER_WHITELIST = ("Content-Type", "memfault-reason", "ETag", "Location", "WWW-Authenticate", "Retry-After",
                    "Content-Range", "Accept-Ranges", "ota-gateway-reason")

# -- masking -----------------------------------------------------------------------------------------

_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
_URL_PARAM_RES = (
    (re.compile(r"([?&])e=\d+"), r"\1e=<expiry>"),  # signed URL expiry (now + ttl, bucketed)
    (re.compile(r"([?&])s=[A-Za-z0-9_\-]+={0,2}"), r"\1s=<signature>"),  # its HMAC
)
_SECRET_RES = (
    (re.compile(r"up_[A-Za-z0-9_\-]{24}"), "up_<upload-token>"),  # artifacts.new_upload_token
    (re.compile(r"oat_[A-Za-z0-9_\-]{40}"), "oat_<org-token>"),  # tokens.new_org_token
)
_HEX32 = re.compile(r"[0-9a-f]{32}")
# Generated secrets an answer shows once that no pattern above recognises, by field: a project
# key or a TargetToken (32 hex characters, like an md5: hence by field, not by pattern), a user's
# secret. Only answers are masked by field; what the scenario sends is its own and kept.
_GENERATED_HEX_FIELDS = {"key": "<project-key>", "target_token": "<target-token>"}
# the project's Ed25519 key is random, and so is what derives from it (the manifest is not)
_KEY_MATERIAL_FIELDS = {"public_key": "<public-key>", "public_key_pem": "<public-key-pem>", "key_id": "<key-id>"}
_DDI_SIGNED_METADATA = {"ota_gateway_signature": "<signature>", "ota_gateway_key_id": "<key-id>"}


def _mask_str(s: str) -> str:
    s = _TIME_RE.sub("<time>", s)
    for rx, repl in _URL_PARAM_RES + _SECRET_RES:
        s = rx.sub(repl, s)
    return s


def _mask_value(v: Any, answer: bool) -> Any:
    if isinstance(v, str):
        return _mask_str(v)
    if isinstance(v, list):
        return [_mask_value(x, answer) for x in v]
    if not isinstance(v, dict):
        return v
    out = {}
    for k, x in v.items():
        if not answer or not isinstance(x, (str, int)) or isinstance(x, bool):
            out[k] = _mask_value(x, answer)
        elif k in _GENERATED_HEX_FIELDS and isinstance(x, str) and _HEX32.fullmatch(x) and x != PROJECT_KEY:
            out[k] = _GENERATED_HEX_FIELDS[k]
        elif k == "secret" and isinstance(x, str):
            out[k] = "<secret>"
        elif k in _KEY_MATERIAL_FIELDS and isinstance(x, str):
            out[k] = _KEY_MATERIAL_FIELDS[k]
        elif k == "value" and "algorithm" in v and "manifest" in v:
            out[k] = "<signature>"  # the signature block of /latest
        elif k == "value" and isinstance(v.get("key"), str) and v["key"] in _DDI_SIGNED_METADATA:
            out[k] = _DDI_SIGNED_METADATA[v["key"]]  # the same, as DDI chunk metadata
        elif k == "pid" and isinstance(x, int):
            out[k] = "<pid>"  # /healthz
        else:
            out[k] = _mask_value(x, answer)
    return out


def mask(exchange: dict) -> dict:
    """The exchange with everything that varies between identical runs replaced by a placeholder:
    ISO times, signed-URL expiries and signatures (`e=`, `s=`), generated secrets (org tokens and
    upload tokens by pattern, anywhere; project keys, target tokens and user secrets by field, in
    answers), Ed25519 key material and signatures, /healthz's process id, Retry-After seconds; an
    ETag computed over a body that needed masking is masked too. Sequence ids from the fresh
    database, DDI `?c=` values (a hash of the action id) and content hashes are deterministic and
    kept."""
    ex = copy.deepcopy(exchange)
    body = ex.get("body")
    masked_body = _mask_value(body, answer=True)
    ex["body"] = masked_body
    ex["path"] = _mask_str(ex["path"])
    ex["request"] = _mask_value(ex.get("request"), answer=False)
    headers = {k: _mask_str(v) for k, v in ex.get("headers", {}).items()}
    if "ETag" in headers and masked_body != body:
        headers["ETag"] = "<etag-of-masked-body>"
    if "Retry-After" in headers:
        headers["Retry-After"] = "<seconds>"
    ex["headers"] = headers
    return ex


# -- recording -----------------------------------------------------------------------------------------

def _bytes_digest(raw: bytes) -> dict:
    return {"sha256": hashlib.sha256(raw).hexdigest(), "length": len(raw)}


def _parse_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if "json" in content_type:
        try:
            return json.loads(raw)
        except ValueError:
            pass
    if content_type.startswith("text/") or "json" in content_type:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return _bytes_digest(raw)


class ScenarioError(AssertionError):
    """The scenario could not go on (a value it needed was missing from an answer)."""


class Recorder:
    def __init__(self, client, out: list[dict]):
        self.client = client
        self.out = out
        # identities by label: requests record the label, never the secret
        self.auth: dict[str, dict] = {"manager": {"Authorization": f"Bearer {ORG_TOKEN}"},
                                      "project-key": {"Memfault-Project-Key": PROJECT_KEY},
                                      "unknown-key": {"Memfault-Project-Key": "f" * 32},
                                      "none": {}}
        self.ids: dict[str, int] = {}  # ids of created tokens, by label

    async def call(self, name: str, method: str, path: str, *, auth: str = "manager", json_body: Any = None,
                   data: bytes | str | None = None, params: dict | None = None, headers: dict | None = None,
                   raw_json: bool = False) -> tuple[int, Any, dict]:
        """One exchange; returns (status, parsed body, whitelisted headers)."""
        if params:
            path = path + ("&" if "?" in path else "?") + urlencode(params)
        hdrs = {**self.auth[auth], **(headers or {})}
        request: dict = {"auth": auth}
        if headers:
            request["headers"] = dict(headers)
        kw: dict = {}
        if json_body is not None:
            kw["json"] = json_body
            request["json"] = json_body
        elif data is not None:
            kw["data"] = data
            if isinstance(data, str):
                request["data"] = data
            elif raw_json:
                request["data"] = data.decode()
            else:
                request["data"] = _bytes_digest(data)
        r = await self.client.request(method, path, headers=hdrs, allow_redirects=False, **kw)
        raw = await r.read()
        ctype = r.headers.get("Content-Type", "")
        body = _parse_body(raw, ctype)
        got = {h: r.headers[h] for h in HEADER_WHITELIST if h in r.headers}
        self.out.append({"name": name, "method": method, "path": path, "request": request, "status": r.status,
                         "headers": got, "body": body})
        if path.startswith(LATEST) or "/controller/v1/" in path:
            await self.flush()  # a device request: its check-in is written before anything reads it
        return r.status, body, got

    def need(self, cond: bool, what: str) -> None:
        if not cond:
            last = self.out[-1] if self.out else {}
            raise ScenarioError(f"scenario cannot continue after {last.get('name')!r}: {what}")

    # -- helpers shaped like the clients ---------------------------------------------------------------

    async def upload(self, label: str, content: bytes, *, version, software_type, hardware_version,
                     must_pass_through=False, name="app.bin", extra=None, auth="manager") -> tuple[int, Any]:
        """memfault-cli's upload-ota-payload: POST upload, PUT the bytes, POST releases/ota_payload."""
        token = await self.upload_bytes(label, content, auth=auth)
        return await self.ota_payload(label, token, content, version=version, software_type=software_type,
                                      hardware_version=hardware_version, must_pass_through=must_pass_through,
                                      name=name, extra=extra, auth=auth)

    async def upload_bytes(self, label: str, content: bytes, *, auth="manager") -> str:
        """POST upload (a signed upload target), PUT the bytes there; the upload token."""
        _, body, _ = await self.call(f"{label}: upload target", "POST", P + "/upload", auth=auth,
                                     json_body={"kind": "OTA_PAYLOAD", "size": len(content)})
        up = _data(body)
        self.need(isinstance(up, dict) and "upload_url" in up, "no upload target")
        await self.call(f"{label}: PUT bytes", "PUT", local(up["upload_url"]), auth="none", data=content)
        return up["token"]

    async def ota_payload(self, label: str, token: str, content: bytes, *, version, software_type, hardware_version,
                          must_pass_through=False, name="app.bin", extra=None, auth="manager") -> tuple[int, Any]:
        req = {"file": {"token": token, "md5": hashlib.md5(content).hexdigest(), "name": name},
               "software_version": {"version": version, "software_type": software_type},
               "hardware_version": hardware_version, "must_pass_through": must_pass_through, "notes": ""}
        if extra is not None:
            req["extra_info"] = extra
        status, body, _ = await self.call(f"{label}: ota_payload", "POST", P + "/releases/ota_payload", auth=auth,
                                          json_body=req)
        return status, body

    async def deploy(self, label: str, release, cohort="default", percent=None, *, auth="manager",
                     software_type=None) -> tuple[int, Any]:
        body = {"type": "normal" if percent is None else "staged_rollout", "release": release, "cohort": cohort}
        if percent is not None:
            body["rollout_percent"] = percent
        if software_type is not None:
            body["software_type"] = software_type
        status, out, _ = await self.call(label, "POST", P + "/deployments", auth=auth, json_body=body)
        return status, out

    async def poll(self, label: str, serial: str | None, current: str | None, *, sw="fw", hw="mp", url=False,
                   key: str = "project-key", extra: dict | None = None):
        """A Memfault device poll (/latest or /latest/url); `key` labels the Memfault-Project-Key."""
        params = {}
        if serial is not None:
            params["device_serial"] = serial
        if hw is not None:
            params["hardware_version"] = hw
        if sw is not None:
            params["software_type"] = sw
        if current:
            params["current_version"] = current
        params.update(extra or {})
        return await self.call(label, "GET", LATEST + ("/url" if url else ""), auth=key, params=params)

    async def flush(self) -> None:
        from gateway.appkeys import CHECKINS

        await self.client.server.app[CHECKINS].flush()


def local(href: str) -> str:
    if not isinstance(href, str) or not href.startswith(PUBLIC):
        raise ScenarioError(f"not a public URL of the gateway: {href!r}")
    return href[len(PUBLIC):]


def fw(version: str, hw: str = "mp", sw: str = "fw") -> bytes:
    return f"firmware {sw} {version} for {hw}\n".encode() * 200


def _data(body) -> Any:
    return body.get("data") if isinstance(body, dict) else None


# -- the scenario -------------------------------------------------------------------------------------

async def run(client, exchanges: list[dict] | None = None) -> list[dict]:
    """Drive the app; the exchanges (unmasked) in order. `exchanges`, when given, is filled in
    place, so that a caller still has what was recorded when the scenario stops half-way."""
    out = exchanges if exchanges is not None else []
    rec = Recorder(client, out)
    await _project_and_auth(rec)
    await _releases(rec)
    await _memfault_polls(rec)
    await _cohorts_devices_overrides(rec)
    await _staging(rec)
    await _keys(rec)
    await _tokens_users_roles(rec)
    await _protected_and_approvals(rec)
    await _ddi(rec)
    await _signing(rec)
    await _insight(rec)
    await _misc_errors(rec)
    return out


async def _project_and_auth(rec: Recorder) -> None:
    c = rec.call
    await c("project: get", "GET", P)
    await c("project: no credentials 401", "GET", P, auth="none")
    rec.auth["bad-bearer"] = {"Authorization": "Bearer wrong"}
    await c("project: wrong bearer 401", "GET", P, auth="bad-bearer")
    rec.auth["bad-scheme"] = {"Authorization": "Token x"}
    await c("project: unknown scheme 401", "GET", P, auth="bad-scheme")
    rec.auth["basic-wrong"] = {"Authorization": "Basic " + base64.b64encode(b":wrong").decode()}
    await c("project: basic with a wrong token 401", "GET", P, auth="basic-wrong")
    rec.auth["basic-org-token"] = {"Authorization": "Basic " + base64.b64encode(f":{ORG_TOKEN}".encode()).decode()}
    await c("project: basic :token", "GET", P, auth="basic-org-token")
    await c("project: other org 404", "GET", "/api/v0/organizations/other/projects/smart-sink")
    await c("project: other project 404", "GET", O + "/projects/nope")
    await c("project: patch unknown field 400", "PATCH", P, json_body={"nope": 1})
    await c("project: patch bad strict_semver 400", "PATCH", P, json_body={"strict_semver": "yes"})
    await c("project: patch bad poll limit 400", "PATCH", P, json_body={"poll_limit_per_minute": 0})
    await c("healthz", "GET", "/healthz", auth="none")
    await c("readyz", "GET", "/readyz", auth="none")


async def _releases(rec: Recorder) -> None:
    c = rec.call
    # fw for hardware mp: Full 1.0.0, 1.1.0, Delta 1.1.0 -> 1.2.0, Full 1.2.0, Must-pass-through 1.5.0, Full 2.0.0
    await rec.upload("fw 1.0.0 mp", fw("1.0.0"), version="1.0.0", software_type="fw", hardware_version="mp")
    await rec.upload("fw 1.0.0 dvt (second payload)", fw("1.0.0", "dvt"), version="1.0.0", software_type="fw",
                     hardware_version="dvt")
    await rec.upload("fw 1.0.0 mp again: identical 409", fw("1.0.0"), version="1.0.0", software_type="fw",
                     hardware_version="mp")
    await rec.upload("fw 1.1.0", fw("1.1.0"), version="1.1.0", software_type="fw", hardware_version="mp",
                     extra={"channel": "stable"})
    await rec.upload("fw delta 1.1.0->1.2.0", fw("d1.2.0"), version=["1.1.0", "1.2.0"], software_type="fw",
                     hardware_version="mp", name="delta.bin")
    await rec.upload("fw 1.2.0", fw("1.2.0"), version="1.2.0", software_type="fw", hardware_version="mp")
    await rec.upload("fw 1.5.0 must pass through", fw("1.5.0"), version="1.5.0", software_type="fw",
                     hardware_version="mp", must_pass_through=True)
    await rec.upload("fw 2.0.0", fw("2.0.0"), version="2.0.0", software_type="fw", hardware_version="mp")
    # one more upload; its token is sent with several releases/ota_payload bodies
    spare = fw("0.9.0")
    token = await rec.upload_bytes("spare bytes", spare)
    await rec.ota_payload("spare as 1.0.0 mp: other bytes 400", token, spare, version="1.0.0", software_type="fw",
                          hardware_version="mp")
    await rec.ota_payload("spare as a must-pass-through delta 400", token, spare, version=["1.0.0", "1.1.0"],
                          software_type="fw", hardware_version="mp", must_pass_through=True)
    await c("project: strict semver on", "PATCH", P, json_body={"strict_semver": True})
    await rec.ota_payload("spare as 3.4.0.2 under strict SemVer 400", token, spare, version="3.4.0.2",
                          software_type="fw", hardware_version="mp")
    await c("project: strict semver off", "PATCH", P, json_body={"strict_semver": False})
    await rec.ota_payload("spare as 0.9.0 (to delete)", token, spare, version="0.9.0", software_type="fw",
                          hardware_version="mp")
    await rec.ota_payload("spare token reused for 0.9.1", token, spare, version="0.9.1", software_type="fw",
                          hardware_version="mp")
    # ota_payload validation
    await c("ota_payload: empty body 400", "POST", P + "/releases/ota_payload", json_body={})
    await c("ota_payload: unknown field 400", "POST", P + "/releases/ota_payload",
            json_body={"file": {"token": "x"}, "dry_run": True})
    await c("ota_payload: unknown nested field 400", "POST", P + "/releases/ota_payload",
            json_body={"file": {"token": "x", "size": 3}})
    await c("ota_payload: unknown upload token 400", "POST", P + "/releases/ota_payload",
            json_body={"file": {"token": "nope", "name": "a.bin"},
                       "software_version": {"version": "1", "software_type": "fw"}, "hardware_version": "mp"})
    await c("ota_payload: bad extra_info 400", "POST", P + "/releases/ota_payload",
            json_body={"file": {"token": "x"}, "software_version": {"version": "1.0.0", "software_type": "fw"},
                       "hardware_version": "mp", "extra_info": {"a": 1}})
    await c("ota_payload: bad file name 400", "POST", P + "/releases/ota_payload",
            json_body={"file": {"token": "x", "name": "../x"},
                       "software_version": {"version": "1.0.0", "software_type": "fw"}, "hardware_version": "mp"})
    # the upload target
    _, body, _ = await c("upload: target for a tamper test", "POST", P + "/upload", json_body={"kind": "OTA_PAYLOAD"})
    url = local(_data(body)["upload_url"])
    await c("upload: tampered signature 403", "PUT", url.replace("s=", "s=x"), auth="none", data=b"abc")
    await c("upload: no signature 403", "PUT", url.split("?")[0], auth="none", data=b"abc")
    await c("upload: negative size 400", "POST", P + "/upload", json_body={"kind": "OTA_PAYLOAD", "size": -1})
    # reading and editing releases
    await c("releases: list", "GET", P + "/releases")
    await c("releases: list filtered", "GET", P + "/releases", params={"software_type": "fw", "version": "1.0.0"})
    await c("releases: get by version", "GET", P + "/releases/1.0.0")
    await c("releases: get by id", "GET", P + "/releases/2")
    await c("releases: get unknown 404", "GET", P + "/releases/9.9.9")
    await c("releases: patch metadata", "PATCH", P + "/releases/1.2.0",
            json_body={"notes": "fixes", "revision": "abc123", "extra_info": {"channel": "beta"}})
    await c("releases: patch bad extra_info 400", "PATCH", P + "/releases/1.2.0", json_body={"extra_info": {"a": 1}})
    await c("releases: patch unknown field 400", "PATCH", P + "/releases/1.2.0", json_body={"version": "x"})
    await c("releases: delete unused", "DELETE", P + "/releases/0.9.0")
    await c("releases: get deleted 404", "GET", P + "/releases/0.9.0")
    await c("software types", "GET", P + "/software_type_values")
    await c("software version", "GET", P + "/software_types/fw/software_versions/1.1.0")


async def _memfault_polls(rec: Recorder) -> None:
    c, poll = rec.call, rec.poll
    await poll("memfault: nothing active 204", "MF1", "1.0.0")
    await rec.deploy("deploy fw 1.0.0 to default", "1.0.0")
    await poll("memfault: 0.5.0 gets full 1.0.0", "MF1", "0.5.0")
    await poll("memfault url: 0.5.0 gets 1.0.0", "MF1", "0.5.0", url=True)
    await poll("memfault: 1.0.0 up to date 204", "MF1", "1.0.0")
    await poll("memfault url: 1.0.0 up to date 204", "MF1", "1.0.0", url=True)
    await rec.deploy("deploy fw 1.1.0", "1.1.0")
    await rec.deploy("deploy fw delta 1.1.0->1.2.0", ["1.1.0", "1.2.0"])
    await rec.deploy("deploy fw 1.2.0", "1.2.0")
    await rec.deploy("deploy fw 1.2.0 again (no change)", "1.2.0")
    await poll("memfault: 1.0.0 gets full 1.2.0", "MF2", "1.0.0")
    await poll("memfault: 1.1.0 gets delta 1.2.0", "MF3", "1.1.0")
    _, url, _ = await poll("memfault url: 1.1.0 gets the delta", "MF3", "1.1.0", url=True)
    await poll("memfault: 1.2.0 up to date", "MF4", "1.2.0")
    await poll("memfault: no current version gets full 1.2.0", "MF5", None)
    await poll("memfault: device_id alias", None, "1.0.0", extra={"device_id": "MF6"})
    await poll("memfault: a newer version than any is up to date", "MF7", "9.0.0")
    await poll("memfault: hardware dvt has only 1.0.0", "MFD1", "0.1.0", hw="dvt")
    await poll("memfault: hardware dvt on 1.0.0", "MFD2", "1.0.0", hw="dvt")
    await poll("memfault url: hardware dvt on 1.0.0", "MFD2", "1.0.0", hw="dvt", url=True)
    await rec.deploy("deploy fw 1.5.0 must pass through", "1.5.0")
    await rec.deploy("deploy fw 2.0.0", "2.0.0")
    await poll("memfault: 1.2.0 must pass through 1.5.0", "MF4", "1.2.0")
    await poll("memfault: 1.1.0 with a must-pass-through 1.5.0 above its delta", "MF3", "1.1.0")
    await poll("memfault: 1.5.0 gets full 2.0.0", "MF8", "1.5.0")
    await poll("memfault url: 1.5.0 gets 2.0.0", "MF8", "1.5.0", url=True)
    await poll("memfault: 2.0.0 up to date", "MF9", "2.0.0")
    # what is not answered
    await poll("memfault: unknown key 403", "MF1", "1.0.0", key="unknown-key")
    await poll("memfault: no key 403", "MF1", "1.0.0", key="none")
    await poll("memfault url: unknown key 403", "MF1", "1.0.0", key="unknown-key", url=True)
    await poll("memfault: missing serial 400", None, "1.0.0")
    await poll("memfault: bad serial 400", "bad serial!", "1.0.0")
    await poll("memfault: missing hardware 400", "MF1", "1.0.0", hw=None)
    await poll("memfault: missing software type 400", "MF1", "1.0.0", sw=None)
    await poll("memfault: unknown hardware is no update (204)", "MF1", "1.0.0", hw="zzz")
    await poll("memfault: unknown software type 400", "MF1", "1.0.0", sw="zzz")
    await poll("memfault: overlong current version 400", "MF1", "1" * 300)
    # the download URL handed out
    if isinstance(url, str):
        path = local(url)
        await c("download: the delta", "GET", path, auth="none", headers={"Accept-Encoding": "identity"})
        await c("download: HEAD", "HEAD", path, auth="none", headers={"Accept-Encoding": "identity"})
        await c("download: range", "GET", path, auth="none",
                headers={"Range": "bytes=100-199", "Accept-Encoding": "identity"})
        await c("download: bad signature 403", "GET", path.replace("s=", "s=A"), auth="none")
        await c("download: no signature 403", "GET", path.split("?")[0], auth="none")


async def _cohorts_devices_overrides(rec: Recorder) -> None:
    c, poll = rec.call, rec.poll
    await c("cohorts: create beta", "POST", P + "/cohorts", json_body={"name": "Beta", "slug": "beta"})
    await c("cohorts: duplicate 409", "POST", P + "/cohorts", json_body={"name": "Beta", "slug": "beta"})
    await c("cohorts: bad slug 400", "POST", P + "/cohorts", json_body={"name": "X", "slug": "Bad Slug"})
    await c("cohorts: unknown field 400", "POST", P + "/cohorts", json_body={"slug": "x", "colour": "red"})
    await c("cohorts: from name only", "POST", P + "/cohorts", json_body={"name": "Night Owls"})
    await c("cohorts: list", "GET", P + "/cohorts")
    await c("cohorts: get beta", "GET", P + "/cohorts/beta")
    await c("cohorts: get unknown 404", "GET", P + "/cohorts/nope")
    await c("cohorts: patch settings", "PATCH", P + "/cohorts/beta",
            json_body={"name": "Beta testers", "ddi_polling_interval": 600, "ddi_update_type": "attempt"})
    await c("cohorts: patch bad interval 400", "PATCH", P + "/cohorts/beta", json_body={"ddi_polling_interval": 1})
    await c("cohorts: patch bad update type 400", "PATCH", P + "/cohorts/beta", json_body={"ddi_update_type": "soft"})
    await c("cohorts: patch bad boolean 400", "PATCH", P + "/cohorts/beta", json_body={"version_checking": "no"})
    await c("cohorts: patch unknown field 400", "PATCH", P + "/cohorts/beta", json_body={"bogus": 1})
    await c("cohorts: patch unknown cohort 404", "PATCH", P + "/cohorts/nope", json_body={"name": "x"})
    # devices
    await c("devices: provision FAC1 into beta", "POST", P + "/devices",
            json_body={"device_serial": "FAC1", "hardware_version": "mp", "cohort": "beta"})
    await c("devices: provision FAC2 (default cohort)", "POST", P + "/devices",
            json_body={"device_serial": "FAC2", "hardware_version": "mp"})
    await c("devices: duplicate 409", "POST", P + "/devices", json_body={"device_serial": "FAC1", "hardware_version": "mp"})
    await c("devices: bad serial 400", "POST", P + "/devices",
            json_body={"device_serial": "bad serial", "hardware_version": "mp"})
    await c("devices: unknown cohort", "POST", P + "/devices",
            json_body={"device_serial": "FAC3", "hardware_version": "mp", "cohort": "nope"})
    await c("devices: unknown field 400", "POST", P + "/devices",
            json_body={"device_serial": "FAC3", "hardware_version": "mp", "colour": "red"})
    await c("devices: get FAC1", "GET", P + "/devices/FAC1")
    await c("devices: get unknown 404", "GET", P + "/devices/NOPE")
    # a beta-only release
    await rec.upload("fw 3.0.0 (beta)", fw("3.0.0"), version="3.0.0", software_type="fw", hardware_version="mp")
    await rec.deploy("deploy fw 3.0.0 to beta", "3.0.0", cohort="beta")
    await poll("memfault: beta device gets 3.0.0", "FAC1", "2.0.0")
    await poll("memfault: default device stays on 2.0.0", "FAC2", "2.0.0")
    await c("cohorts: version checking off in beta", "PATCH", P + "/cohorts/beta", json_body={"version_checking": False})
    await poll("memfault: no version checking downgrades to the target", "FAC1", "5.0.0")
    await c("cohorts: version checking back on", "PATCH", P + "/cohorts/beta", json_body={"version_checking": True})
    await poll("memfault: version checking on again", "FAC1", "5.0.0")
    await c("devices: move FAC1 to default", "PATCH", P + "/devices/FAC1", json_body={"cohort": "default"})
    await poll("memfault: moved device no longer gets the beta release", "FAC1", "2.0.0")
    await c("devices: move with a cohort object", "PATCH", P + "/devices/FAC1", json_body={"cohort": {"slug": "beta"}})
    await c("devices: move back to default", "PATCH", P + "/devices/FAC1", json_body={"cohort": "default"})
    await c("devices: hardware immutable 400", "PATCH", P + "/devices/FAC1", json_body={"hardware_version": "x"})
    await c("devices: move unknown device 404", "PATCH", P + "/devices/NOPE", json_body={"cohort": "beta"})
    await c("devices: move to unknown cohort", "PATCH", P + "/devices/FAC1", json_body={"cohort": "nope"})
    # overrides
    await c("override: pin FAC2 to 1.0.0", "PUT", P + "/devices/FAC2/release-override",
            json_body={"release": "1.0.0", "software_type": "fw"})
    await poll("memfault: override is a downgrade", "FAC2", "2.0.0")
    await poll("memfault: never the current version", "FAC2", "1.0.0")
    await c("devices: get FAC2 with its override", "GET", P + "/devices/FAC2")
    await c("override: by release id", "PUT", P + "/devices/FAC2/release-override", json_body={"release": 3})
    await poll("memfault: override by id", "FAC2", "2.0.0")
    await c("override: clear", "DELETE", P + "/devices/FAC2/release-override")
    await poll("memfault: override cleared", "FAC2", "1.0.0")
    await c("override: unknown release 404", "PUT", P + "/devices/FAC2/release-override", json_body={"release": "9.9.9"})
    await c("override: unknown device 404", "PUT", P + "/devices/NOPE/release-override", json_body={"release": "1.0.0"})
    await c("override: missing release 400", "PUT", P + "/devices/FAC2/release-override", json_body={})
    await c("devices: list beta", "GET", P + "/devices", params={"cohort": "beta"})
    await c("devices: list default, paged", "GET", P + "/devices", params={"cohort": "default", "per_page": 5, "page": 2})
    await c("devices: bad paging 400", "GET", P + "/devices", params={"per_page": "x"})
    await c("devices: FAC1 history", "GET", P + "/devices/FAC1/history")
    await c("devices: MF3 history", "GET", P + "/devices/MF3/history")
    await c("devices: history of unknown 404", "GET", P + "/devices/NOPE/history")


async def _staging(rec: Recorder) -> None:
    c, poll = rec.call, rec.poll
    await c("cohorts: create stage", "POST", P + "/cohorts", json_body={"slug": "stage", "name": "Stage"})
    for i in range(3):
        await c(f"devices: provision ST{i}", "POST", P + "/devices",
                json_body={"device_serial": f"ST{i}", "hardware_version": "mp", "cohort": "stage"})
    await rec.deploy("stage: 1.0.0 to everyone", "1.0.0", cohort="stage")
    await rec.deploy("stage: 1.1.0 staged at 0 %", "1.1.0", cohort="stage", percent=0)
    for i in range(3):
        await poll(f"memfault: ST{i} not staged at 0 %", f"ST{i}", "1.0.0")
    await c("staging: stage ST1 and ST2 by name", "POST", P + "/cohorts/stage/staging",
            json_body={"staged": True, "serials": ["ST1", "ST2"]})
    for i in range(3):
        await poll(f"memfault: ST{i} after staging ST1, ST2", f"ST{i}", "1.0.0")
    await c("staging: unstage ST2", "POST", P + "/cohorts/stage/staging", json_body={"staged": False, "serials": ["ST2"]})
    await poll("memfault: ST2 unstaged", "ST2", "1.0.0")
    await c("staging: unknown serial 404", "POST", P + "/cohorts/stage/staging",
            json_body={"staged": True, "serials": ["NOPE"]})
    await c("staging: bad staged 400", "POST", P + "/cohorts/stage/staging", json_body={"staged": "yes"})
    await c("staging: bad order 400", "POST", P + "/cohorts/stage/staging", json_body={"order": "oldest"})
    await c("staging: unknown cohort 404", "POST", P + "/cohorts/nope/staging", json_body={"staged": True})
    await c("devices: list stage", "GET", P + "/devices", params={"cohort": "stage"})
    await c("matrix: stage at 0 % plus one named", "GET", P + "/cohorts/stage/version-matrix",
            params={"software_type": "fw"})
    await rec.deploy("stage: 1.1.0 at 100 % (normal)", "1.1.0", cohort="stage", percent=100)
    for i in range(3):
        await poll(f"memfault: ST{i} at 100 %", f"ST{i}", "1.0.0")
    # a percentage in between: which devices is random, how many is not
    await c("cohorts: create half", "POST", P + "/cohorts", json_body={"slug": "half", "name": "Half"})
    for i in range(2):
        await c(f"devices: provision HALF{i}", "POST", P + "/devices",
                json_body={"device_serial": f"HALF{i}", "hardware_version": "mp", "cohort": "half"})
    await rec.deploy("half: 1.0.0 to everyone", "1.0.0", cohort="half")
    for i in range(2):
        await poll(f"memfault: HALF{i} on 1.0.0", f"HALF{i}", "1.0.0")
    await rec.deploy("half: 1.1.0 staged at 50 %", "1.1.0", cohort="half", percent=50)
    await c("matrix: half at 50 % (counts only)", "GET", P + "/cohorts/half/version-matrix",
            params={"software_type": "fw"})
    await c("staging: stage all of half by name", "POST", P + "/cohorts/half/staging",
            json_body={"staged": True, "serials": ["HALF0", "HALF1"]})
    await c("matrix: half all staged", "GET", P + "/cohorts/half/version-matrix", params={"software_type": "fw"})
    # deployments
    await c("deployments: list", "GET", P + "/deployments")
    await c("deployments: list for a cohort and release", "GET", P + "/deployments",
            params={"cohort": "stage", "release": "1.1.0"})
    await c("deployments: list a delta", "GET", P + "/deployments", params={"delta_from": "1.1.0", "delta_to": "1.2.0"})
    await c("deployments: list active in half", "GET", P + "/deployments", params={"cohort": "half", "status": "active"})
    _, body, _ = await c("deployments: list half 1.1.0", "GET", P + "/deployments",
                         params={"cohort": "half", "release": "1.1.0"})
    deps = _data(body) or []
    rec.need(len(deps) == 1, "one activation of 1.1.0 in half")
    dep_id = deps[0]["id"]
    await c("deployments: pull half 1.1.0", "DELETE", P + f"/deployments/{dep_id}")
    await c("deployments: pull again 409", "DELETE", P + f"/deployments/{dep_id}")
    await c("deployments: pull unknown 404", "DELETE", P + "/deployments/999999")
    await c("deployments: pull non-numeric 404", "DELETE", P + "/deployments/abc")
    await poll("memfault: pulled in half", "HALF0", "1.0.0")
    await c("releases: delete active 409", "DELETE", P + "/releases/1.0.0")
    # validation
    await c("deployments: missing cohort 400", "POST", P + "/deployments", json_body={"release": "1.0.0"})
    await c("deployments: missing release 400", "POST", P + "/deployments", json_body={"cohort": "default"})
    await c("deployments: bad type 400", "POST", P + "/deployments",
            json_body={"type": "weird", "release": "1.0.0", "cohort": "default"})
    await c("deployments: staged without percent 400", "POST", P + "/deployments",
            json_body={"type": "staged_rollout", "release": "1.0.0", "cohort": "default"})
    await c("deployments: percent 101 400", "POST", P + "/deployments",
            json_body={"type": "staged_rollout", "release": "1.0.0", "cohort": "default", "rollout_percent": 101})
    await c("deployments: unknown field 400", "POST", P + "/deployments",
            json_body={"release": "1.0.0", "cohort": "default", "dryrun": True})
    await c("deployments: unknown release 404", "POST", P + "/deployments",
            json_body={"release": "0.0.404", "cohort": "default"})
    await c("deployments: unknown cohort 404", "POST", P + "/deployments", json_body={"release": "1.0.0", "cohort": "nope"})
    await c("deployments: invalid JSON 400", "POST", P + "/deployments", data=b"{not json", raw_json=True)


async def _keys(rec: Recorder) -> None:
    c, poll = rec.call, rec.poll
    _, body, _ = await c("keys: create a recovery key for beta", "POST", P + "/project-keys",
                         json_body={"name": "recovery", "cohort_override": "beta"})
    created = _data(body) or {}
    rec.need("key" in created, "a project key")
    rec.auth["recovery-key"] = {"Memfault-Project-Key": created["key"]}
    await poll("memfault: recovery key answers as beta", "KEY1", "2.0.0", key="recovery-key")
    await poll("memfault: project key answers as default", "KEY1", "2.0.0")
    await c("keys: list", "GET", P + "/project-keys")
    await c("inspect: KEY1 with key overrides", "GET", P + "/devices/KEY1/inspect",
            params={"software_type": "fw", "current_version": "2.0.0", "hardware_version": "mp"})
    await c("keys: revoke", "DELETE", P + f"/project-keys/{created['id']}")
    await poll("memfault: revoked key 403", "KEY1", "2.0.0", key="recovery-key")
    await c("keys: revoke again 404", "DELETE", P + f"/project-keys/{created['id']}")
    await c("keys: unknown cohort override 400", "POST", P + "/project-keys", json_body={"cohort_override": "nope"})
    await c("keys: unknown field 400", "POST", P + "/project-keys", json_body={"name": "x", "scope": "all"})
    await c("keys: list after revoke", "GET", P + "/project-keys")


async def _tokens_users_roles(rec: Recorder) -> None:
    c = rec.call
    await c("tokens: list", "GET", O + "/tokens")
    for label, role, flag in (("viewer", "viewer", False), ("editor-a", "editor", False), ("editor-b", "editor", False),
                              ("flagged", "editor", True), ("doomed", "viewer", False)):
        _, body, _ = await c(f"tokens: create {label}", "POST", O + "/tokens",
                             json_body={"name": label, "role": role, "can_activate_protected": flag})
        tok = _data(body) or {}
        rec.need("token" in tok, f"token {label}")
        rec.auth[label] = {"Authorization": f"Bearer {tok['token']}"}
        rec.ids[label] = tok["id"]
    await c("tokens: bad role 400", "POST", O + "/tokens", json_body={"name": "x", "role": "admin"})
    await c("tokens: missing name 400", "POST", O + "/tokens", json_body={"role": "viewer"})
    await c("tokens: bad flag 400", "POST", O + "/tokens", json_body={"name": "x", "can_activate_protected": "yes"})
    await c("tokens: editor may not create 403", "POST", O + "/tokens", auth="editor-a",
            json_body={"name": "x", "role": "viewer"})
    await c("tokens: other org 404", "GET", "/api/v0/organizations/other/tokens")
    await c("tokens: viewer reads the project", "GET", P, auth="viewer")
    await c("tokens: viewer may not write 403", "POST", P + "/cohorts", auth="viewer", json_body={"slug": "x", "name": "x"})
    await c("tokens: editor may not patch the project 403", "PATCH", P, auth="editor-a",
            json_body={"strict_semver": False})
    await c("tokens: editor may not create keys 403", "POST", P + "/project-keys", auth="editor-a",
            json_body={"name": "x"})
    await c("tokens: viewer may not deploy 403", "POST", P + "/deployments", auth="viewer",
            json_body={"release": "1.0.0", "cohort": "default"})
    doomed = rec.ids["doomed"]
    await c("tokens: revoke", "DELETE", O + f"/tokens/{doomed}")
    await c("tokens: revoked token 401", "GET", P, auth="doomed")
    await c("tokens: revoke again 404", "DELETE", O + f"/tokens/{doomed}")
    await c("tokens: list after", "GET", O + "/tokens")
    # users
    await c("users: list", "GET", O + "/users")
    await c("users: create with a secret", "POST", O + "/users",
            json_body={"email": "rm@acme.test", "role": "viewer", "secret": "s3cret-pass-word"})
    await c("users: create with a generated secret", "POST", O + "/users",
            json_body={"email": "ops@acme.test", "role": "editor"})
    await c("users: duplicate 409", "POST", O + "/users", json_body={"email": "rm@acme.test", "secret": "s3cret-pass-word"})
    await c("users: bad email 400", "POST", O + "/users", json_body={"email": "nobody", "secret": "s3cret-pass-word"})
    await c("users: short secret 400", "POST", O + "/users", json_body={"email": "x@acme.test", "secret": "short"})
    await c("users: list after", "GET", O + "/users")
    rec.auth["user-rm"] = {"Authorization": "Basic " + base64.b64encode(b"rm@acme.test:s3cret-pass-word").decode()}
    rec.auth["user-rm-wrong"] = {"Authorization": "Basic " + base64.b64encode(b"rm@acme.test:nope").decode()}
    await c("users: basic email:secret", "GET", P, auth="user-rm")
    await c("users: wrong secret 401", "GET", P, auth="user-rm-wrong")
    await c("users: viewer user may not write 403", "POST", P + "/cohorts", auth="user-rm",
            json_body={"slug": "y", "name": "y"})


async def _protected_and_approvals(rec: Recorder) -> None:
    c, poll = rec.call, rec.poll
    await c("cohorts: create prod", "POST", P + "/cohorts", json_body={"slug": "prod", "name": "Production"})
    await c("cohorts: editor may not protect 403", "PATCH", P + "/cohorts/prod", auth="editor-a",
            json_body={"protected": True})
    await c("cohorts: protect prod", "PATCH", P + "/cohorts/prod", json_body={"protected": True})
    await rec.deploy("prod: editor refused 403", "2.0.0", cohort="prod", auth="editor-a")
    await rec.deploy("prod: flagged token deploys", "2.0.0", cohort="prod", auth="flagged")
    await c("prod: editor may not provision into it 403", "POST", P + "/devices", auth="editor-a",
            json_body={"device_serial": "PROD1", "hardware_version": "mp", "cohort": "prod"})
    await c("prod: flagged token provisions", "POST", P + "/devices", auth="flagged",
            json_body={"device_serial": "PROD1", "hardware_version": "mp", "cohort": "prod"})
    await poll("memfault: prod device", "PROD1", "1.0.0")
    await c("prod: editor may not unprotect 403", "PATCH", P + "/cohorts/prod", auth="editor-a",
            json_body={"protected": False})
    await c("prod: editor may not move a device out 403", "PATCH", P + "/devices/PROD1", auth="editor-a",
            json_body={"cohort": "default"})
    await c("prod: editor may not override 403", "PUT", P + "/devices/PROD1/release-override", auth="editor-a",
            json_body={"release": "1.0.0", "software_type": "fw"})
    # a cohort that requires approval
    await c("cohorts: create gated", "POST", P + "/cohorts", json_body={"slug": "gated", "name": "Gated"})
    await c("cohorts: gated requires approval", "PATCH", P + "/cohorts/gated", json_body={"requires_approval": True})
    await c("gated: editor provisions GATE1 (no approval needed)", "POST", P + "/devices", auth="editor-a",
            json_body={"device_serial": "GATE1", "hardware_version": "mp", "cohort": "gated"})
    status, body = await rec.deploy("gated: editor-a files an activation 202", "2.0.0", cohort="gated",
                                    auth="editor-a")
    req = _data(body) or {}
    rec.need(status == 202 and "id" in req, "a pending activation request")
    await poll("memfault: pending request changes nothing", "GATE1", "1.0.0")
    await c("requests: list pending", "GET", P + "/activation-requests")
    await c("requests: editor-a may not approve its own 403", "POST", P + f"/activation-requests/{req['id']}/approve",
            auth="editor-a")
    await c("requests: viewer may not approve 403", "POST", P + f"/activation-requests/{req['id']}/approve",
            auth="viewer")
    await c("requests: editor-b approves", "POST", P + f"/activation-requests/{req['id']}/approve", auth="editor-b")
    await poll("memfault: approved activation applies", "GATE1", "1.0.0")
    await c("requests: reject after approval 409", "POST", P + f"/activation-requests/{req['id']}/reject",
            auth="editor-b")
    await c("requests: unknown 404", "POST", P + "/activation-requests/999/approve", auth="editor-b")
    _, body, _ = await c("gated: deployments", "GET", P + "/deployments", params={"cohort": "gated"})
    deps = _data(body) or []
    rec.need(len(deps) == 1, "one gated deployment")
    status, body, _ = await c("gated: editor-a files a deactivation 202", "DELETE", P + f"/deployments/{deps[0]['id']}",
                              auth="editor-a")
    rid = (_data(body) or {}).get("id")
    rec.need(status == 202 and rid is not None, "a pending deactivation request")
    await c("requests: editor-b rejects", "POST", P + f"/activation-requests/{rid}/reject", auth="editor-b")
    await poll("memfault: rejected deactivation changed nothing", "GATE1", "1.0.0")
    status, body = await rec.deploy("gated: editor-a files a rollout change 202", "2.0.0", cohort="gated",
                                    percent=0, auth="editor-a")
    await c("gated: key with cohort override 202", "POST", P + "/project-keys",
            json_body={"name": "gated-recovery", "cohort_override": "gated"})
    await c("requests: list pending again", "GET", P + "/activation-requests")
    await c("requests: list all", "GET", P + "/activation-requests", params={"status": "all"})
    await c("requests: bad status 400", "GET", P + "/activation-requests", params={"status": "maybe"})


async def _ddi(rec: Recorder) -> None:
    c = rec.call
    rec.auth["gateway-token"] = {"Authorization": f"GatewayToken {PROJECT_KEY}"}
    rec.auth["bad-gateway-token"] = {"Authorization": "GatewayToken nope"}
    gw = "gateway-token"

    def base(serial: str, root: str = "") -> str:
        return f"{root}/{PROJECT}/controller/v1/{serial}"

    swu1, swu2 = b"swu one " * 500, b"swu two " * 700
    await rec.upload("ddi: main 1.0.0", swu1, version="1.0.0", software_type="main", hardware_version="evt",
                     name="image.swu")
    await rec.upload("ddi: main 2.0.0", swu2, version="2.0.0", software_type="main", hardware_version="evt",
                     name="image.swu", extra={"build": "42"})
    await rec.deploy("ddi: deploy main 1.0.0", "1.0.0", software_type="main")
    await rec.deploy("ddi: deploy main 2.0.0", "2.0.0", software_type="main")
    # authentication
    await c("ddi: no credentials 401", "GET", base("DDI1"), auth="none")
    await c("ddi: bad gateway token 401", "GET", base("DDI1"), auth="bad-gateway-token")
    await c("ddi: bad controller id 400", "GET", base("bad%20serial"), auth=gw)
    # first poll of an unknown device: asks for its attributes
    _, body, hdrs = await c("ddi: first poll", "GET", base("DDI1"), auth=gw)
    await c("ddi: first poll under /api/v0/hawkbit", "GET", base("DDI1", "/api/v0/hawkbit"), auth=gw)
    attrs = {"memfault__hardware_version": "evt", "memfault__software_type": "main",
             "memfault__current_version": "1.0.0"}
    await c("ddi: configData", "PUT", base("DDI1") + "/configData", auth=gw, json_body={"mode": "merge", "data": attrs})
    await c("ddi: configData bad mode 400", "PUT", base("DDI1") + "/configData", auth=gw,
            json_body={"mode": "append", "data": {"k": "v"}})
    await c("ddi: configData non-string 400", "PUT", base("DDI1") + "/configData", auth=gw,
            json_body={"data": {"k": 5}})
    _, body, hdrs = await c("ddi: poll offers deploymentBase", "GET", base("DDI1"), auth=gw)
    href = (((body or {}).get("_links") or {}).get("deploymentBase") or {}).get("href")
    rec.need(isinstance(href, str), "a deploymentBase link")
    action = int(re.search(r"/deploymentBase/(\d+)", href).group(1))
    if "ETag" in hdrs:
        await c("ddi: poll with If-None-Match 304", "GET", base("DDI1"), auth=gw,
                headers={"If-None-Match": hdrs["ETag"]})
    _, doc, _ = await c("ddi: deploymentBase", "GET", local(href), auth=gw)
    art = doc["deployment"]["chunks"][0]["artifacts"][0] if isinstance(doc, dict) and "deployment" in doc else {}
    dl = local(art.get("_links", {}).get("download-http", {}).get("href", PUBLIC + "/missing"))
    ident = {"Accept-Encoding": "identity"}
    await c("ddi: download signed", "GET", dl, auth="none", headers=ident)
    await c("ddi: download with the device's header", "GET", dl.split("?")[0], auth=gw, headers=ident)
    await c("ddi: download unsigned without header 401", "GET", dl.split("?")[0], auth="none")
    await c("ddi: download range", "GET", dl, auth="none", headers={"Range": "bytes=100-", **ident})
    await c("ddi: md5sum", "GET", local(art.get("_links", {}).get("md5sum-http", {}).get("href", PUBLIC + "/missing")),
            auth="none")
    await c("ddi: artifact list", "GET", dl.split("/artifacts/")[0] + "/artifacts", auth=gw)
    await c("ddi: unknown artifact 404", "GET", dl.split("?")[0].replace("image.swu", "other.swu"), auth=gw)
    fb = base("DDI1") + f"/deploymentBase/{action}/feedback"

    def feedback(execution, finished, details):
        return {"id": action, "time": "20260101T000000",
                "status": {"execution": execution, "result": {"finished": finished, "progress": {"cnt": 1, "of": 2}},
                           "details": details}}

    await c("ddi: feedback proceeding", "POST", fb, auth=gw, json_body=feedback("proceeding", "none", ["downloading"]))
    await c("ddi: feedback proceeding again", "POST", fb, auth=gw,
            json_body=feedback("proceeding", "none", ["installing", "step 2"]))
    await c("ddi: feedback bad execution 400", "POST", fb, auth=gw, json_body={"status": {"execution": "finished",
                                                                                         "result": {"finished": "none"}}})
    await c("ddi: feedback missing status 400", "POST", fb, auth=gw, json_body={})
    await c("ddi: feedback for another device's action 404", "POST",
            base("DDI9") + f"/deploymentBase/{action}/feedback", auth=gw,
            json_body=feedback("proceeding", "none", ["x"]))
    await c("ddi: deploymentBase with action history", "GET", base("DDI1") + f"/deploymentBase/{action}",
            auth=gw, params={"actionHistory": 2})
    await c("ddi: poll while running", "GET", base("DDI1"), auth=gw)
    await c("ddi: feedback closed success", "POST", fb, auth=gw,
            json_body=feedback("closed", "success", ["Update Installed."]))
    _, body, _ = await c("ddi: poll after success (installedBase)", "GET", base("DDI1"), auth=gw)
    await c("ddi: feedback on a closed action 410", "POST", fb, auth=gw,
            json_body=feedback("closed", "success", ["again"]))
    await c("ddi: closed deploymentBase 404", "GET", base("DDI1") + f"/deploymentBase/{action}", auth=gw)
    await c("ddi: installedBase", "GET", base("DDI1") + f"/installedBase/{action}", auth=gw)
    await c("ddi: configData after the update", "PUT", base("DDI1") + "/configData", auth=gw,
            json_body={"data": {**attrs, "memfault__current_version": "2.0.0", "mac": "00:11:22:33:44:55"}})
    await c("ddi: next poll, nothing to do", "GET", base("DDI1"), auth=gw)
    await c("ddi: non-numeric action 400", "GET", base("DDI1") + "/deploymentBase/abc", auth=gw)
    # failure, retry
    await c("ddi: DDI2 configData", "PUT", base("DDI2") + "/configData", auth=gw, json_body={"data": attrs})
    _, body, _ = await c("ddi: DDI2 poll", "GET", base("DDI2"), auth=gw)
    href2 = (((body or {}).get("_links") or {}).get("deploymentBase") or {}).get("href", "")
    rec.need("/deploymentBase/" in href2, "a second deploymentBase link")
    action2 = int(re.search(r"/deploymentBase/(\d+)", href2).group(1))
    await c("ddi: DDI2 feedback failure", "POST", base("DDI2") + f"/deploymentBase/{action2}/feedback", auth=gw,
            json_body={"status": {"execution": "closed", "result": {"finished": "failure"},
                                  "details": ["ERROR: handler failed"]}})
    await c("ddi: DDI2 poll after failure", "GET", base("DDI2"), auth=gw)
    await c("ddi: per-release action counts", "GET", P + "/ddi/releases")
    await c("ddi: retry the failed action", "POST", P + f"/devices/DDI2/ddi/actions/{action2}/retry")
    await c("ddi: retry again 409", "POST", P + f"/devices/DDI2/ddi/actions/{action2}/retry")
    await c("ddi: retry bad id 400", "POST", P + "/devices/DDI2/ddi/actions/x/retry")
    await c("ddi: DDI2 offered again", "GET", base("DDI2"), auth=gw)
    # cancel
    await rec.upload("ddi: cancelfw 5.0.0", b"cancel me" * 99, version="5.0.0", software_type="cancelfw",
                     hardware_version="evt", name="c.swu")
    _, body = await rec.deploy("ddi: deploy cancelfw 5.0.0", "5.0.0", software_type="cancelfw")
    cdep = (_data(body) or {}).get("id")
    await c("ddi: CAN1 configData", "PUT", base("CAN1") + "/configData", auth=gw,
            json_body={"data": {**attrs, "memfault__software_type": "cancelfw", "memfault__current_version": "4.0.0"}})
    _, body, _ = await c("ddi: CAN1 poll", "GET", base("CAN1"), auth=gw)
    href3 = (((body or {}).get("_links") or {}).get("deploymentBase") or {}).get("href", "")
    rec.need("/deploymentBase/" in href3 and cdep is not None, "a cancelable deployment")
    action3 = int(re.search(r"/deploymentBase/(\d+)", href3).group(1))
    await c("ddi: cancel feedback while not canceling 405", "POST", base("CAN1") + f"/cancelAction/{action3}/feedback",
            auth=gw, json_body={"status": {"execution": "closed", "result": {"finished": "success"}}})
    await c("ddi: pull cancelfw", "DELETE", P + f"/deployments/{cdep}")
    await c("ddi: CAN1 poll offers cancelAction", "GET", base("CAN1"), auth=gw)
    await c("ddi: cancelAction", "GET", base("CAN1") + f"/cancelAction/{action3}", auth=gw)
    await c("ddi: canceled deploymentBase 404", "GET", base("CAN1") + f"/deploymentBase/{action3}", auth=gw)
    await c("ddi: cancel feedback", "POST", base("CAN1") + f"/cancelAction/{action3}/feedback", auth=gw,
            json_body={"status": {"execution": "closed", "result": {"finished": "success"},
                                  "details": ["cancellation acknowledged."]}})
    await c("ddi: CAN1 poll after cancel", "GET", base("CAN1"), auth=gw)
    await c("ddi: cancel feedback again 410", "POST", base("CAN1") + f"/cancelAction/{action3}/feedback", auth=gw,
            json_body={"status": {"execution": "closed", "result": {"finished": "success"}}})
    # management views of DDI devices
    await c("ddi: DDI1 actions", "GET", P + "/devices/DDI1/ddi/actions")
    await c("ddi: DDI2 actions", "GET", P + "/devices/DDI2/ddi/actions")
    await c("ddi: CAN1 actions", "GET", P + "/devices/CAN1/ddi/actions")
    await c("ddi: DDI1 attributes", "GET", P + "/devices/DDI1/ddi")
    await c("ddi: inspect DDI2", "GET", P + "/devices/DDI2/inspect")
    # target tokens
    await c("ddi: set a chosen target token", "POST", P + "/devices/DDI1/ddi/token",
            json_body={"token": "chosen-target-token-0001"})
    rec.auth["target-token"] = {"Authorization": "TargetToken chosen-target-token-0001"}
    await c("ddi: poll with the target token", "GET", base("DDI1"), auth="target-token")
    await c("ddi: target token of another device 401", "GET", base("DDI2"), auth="target-token")
    await c("ddi: rotate to a generated target token", "POST", P + "/devices/DDI1/ddi/token")
    await c("ddi: old target token 401", "GET", base("DDI1"), auth="target-token")
    await c("ddi: clear target token", "DELETE", P + "/devices/DDI1/ddi/token")
    await c("ddi: short target token 400", "POST", P + "/devices/DDI1/ddi/token", json_body={"token": "short"})
    await c("ddi: target token for unknown device 404", "POST", P + "/devices/NOPE/ddi/token")
    await c("devices: DDI1", "GET", P + "/devices/DDI1")
    await c("devices: DDI1 history", "GET", P + "/devices/DDI1/history")


async def _signing(rec: Recorder) -> None:
    c, poll = rec.call, rec.poll
    await poll("memfault: hardware evt has no fw release", "EVT1", "1.0.0", hw="evt")
    await poll("memfault url: hardware evt has no fw release", "EVT1", "1.0.0", hw="evt", url=True)
    await c("signing: none yet 404", "GET", P + "/signing-key")
    await c("signing: editor may not create 403", "POST", P + "/signing-key", auth="editor-a")
    await c("signing: create", "POST", P + "/signing-key")
    await c("signing: get", "GET", P + "/signing-key")
    await poll("memfault: signed release", "SIG1", "1.5.0")
    await c("ddi: SIG2 configData", "PUT", f"/{PROJECT}/controller/v1/SIG2/configData", auth="gateway-token",
            json_body={"data": {"memfault__hardware_version": "evt", "memfault__software_type": "main",
                                "memfault__current_version": "1.0.0"}})
    _, body, _ = await c("ddi: SIG2 poll", "GET", f"/{PROJECT}/controller/v1/SIG2", auth="gateway-token")
    href = (((body or {}).get("_links") or {}).get("deploymentBase") or {}).get("href", "")
    rec.need("/deploymentBase/" in href, "a deploymentBase link for SIG2")
    await c("ddi: signed deploymentBase", "GET", local(href), auth="gateway-token")
    await c("signing: rotate", "POST", P + "/signing-key")
    await c("signing: delete", "DELETE", P + "/signing-key")
    await c("signing: delete again 404", "DELETE", P + "/signing-key")
    await poll("memfault: unsigned again", "SIG1", "1.5.0")


async def _insight(rec: Recorder) -> None:
    c = rec.call
    await c("matrix: default fw", "GET", P + "/cohorts/default/version-matrix", params={"software_type": "fw"})
    await c("matrix: default without software type 400", "GET", P + "/cohorts/default/version-matrix")
    await c("matrix: beta (one software type)", "GET", P + "/cohorts/beta/version-matrix")
    await c("matrix: unknown cohort 404", "GET", P + "/cohorts/nope/version-matrix")
    await c("inspect: MF3", "GET", P + "/devices/MF3/inspect")
    await c("inspect: MF3 as if on 1.1.0", "GET", P + "/devices/MF3/inspect",
            params={"software_type": "fw", "current_version": "1.1.0"})
    await c("inspect: unknown 404", "GET", P + "/devices/NOPE/inspect")
    await c("inspect: unregistered with hardware", "GET", P + "/devices/NEW1/inspect",
            params={"hardware_version": "mp", "software_type": "fw", "current_version": "1.0.0"})
    await c("devices: list all", "GET", P + "/devices", params={"per_page": 1000})
    await c("deployment history", "GET", P + "/deployment-history")
    await c("audit log: deployments", "GET", P + "/audit-log", params={"action": "deployment."})
    await c("audit log: by actor", "GET", P + "/audit-log", params={"actor": "token:1", "limit": 5})
    await c("audit log: paged", "GET", P + "/audit-log", params={"limit": 3, "before": 10})
    await c("audit log: bad limit 400", "GET", P + "/audit-log", params={"limit": "x"})
    await c("audit log: all", "GET", P + "/audit-log", params={"limit": 1000})
    await c("releases: list at the end", "GET", P + "/releases")
    await c("deployments: list at the end", "GET", P + "/deployments")
    await c("cohorts: list at the end", "GET", P + "/cohorts")


async def _misc_errors(rec: Recorder) -> None:
    c = rec.call
    await c("errors: form body 415", "POST", P + "/cohorts", data="slug=x",
            headers={"Content-Type": "application/x-www-form-urlencoded"})
    await c("errors: JSON array body 400", "POST", P + "/cohorts", data=b"[1, 2]", raw_json=True,
            headers={"Content-Type": "application/json"})
    await c("errors: unknown route 404", "GET", "/api/v0/nothing-here", auth="none")
    await c("errors: wrong method", "PUT", P + "/releases", json_body={})
    await c("openapi document", "GET", "/api/openapi.json", auth="none")
