"""The web dashboard, in process: login and sessions, cookie flags, CSRF, roles, protected cohorts
and approvals through the forms, the audit trail, HTML errors, and no external requests."""
from __future__ import annotations

import re

from conftest import ORG, ORG_TOKEN, P, PROJECT, auth_headers, upload_release

from gateway.appkeys import POOL
from gateway.config import Settings
from gateway.store import bootstrap as bootstrap_store

UI = f"/ui/p/{PROJECT}"
O = f"/api/v0/organizations/{ORG}"
CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, html[:2000]
    return m.group(1)


async def login(client, secret: str, email: str = "") -> str:
    """Log in through the form; returns the session's CSRF token (from the next page)."""
    r = await client.get("/ui/login")
    assert r.status == 200
    r = await client.post("/ui/login", data={"_csrf": csrf_of(await r.text()), "email": email, "secret": secret},
                          allow_redirects=False)
    assert r.status == 303, await r.text()
    r = await client.get(UI + "/releases")
    assert r.status == 200
    return csrf_of(await r.text())


async def make_token(client, role: str, name: str, protected: bool = False) -> str:
    r = await client.post(O + "/tokens", json={"name": name, "role": role, "can_activate_protected": protected},
                          headers=auth_headers())
    assert r.status == 201, await r.text()
    return (await r.json())["data"]["token"]


async def test_login_cookie_flags_and_logout(client):
    r = await client.get("/ui/", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].startswith("/ui/login?next=")
    r = await client.get("/ui/login")
    html = await r.text()
    assert "text/html" in r.headers["Content-Type"] and "Content-Security-Policy" in r.headers
    token = csrf_of(html)
    # no CSRF token, or a wrong one: refused before the credentials are even looked at
    r = await client.post("/ui/login", data={"secret": ORG_TOKEN}, allow_redirects=False)
    assert r.status == 403 and "CSRF" in await r.text()
    r = await client.post("/ui/login", data={"_csrf": "x" + token, "secret": ORG_TOKEN}, allow_redirects=False)
    assert r.status == 403
    r = await client.post("/ui/login", data={"_csrf": token, "secret": "oat_wrong"}, allow_redirects=False)
    assert r.status == 401 and "invalid or revoked" in await r.text()
    r = await client.post("/ui/login", data={"_csrf": token, "secret": ORG_TOKEN, "next": "//evil.example/"},
                          allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/ui/"  # never an open redirect
    cookie = next(v for v in r.headers.getall("Set-Cookie") if v.startswith("ota_session="))
    flags = {f.strip().split("=")[0].lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= flags and "secure" not in flags
    assert "SameSite=Strict" in cookie and "Path=/ui/" in cookie
    sid = cookie.split(";")[0].split("=", 1)[1]
    assert await client.server.app[POOL].fetchval(  # stored hashed, never as sent
        "SELECT count(*) FROM ui_sessions WHERE id_hash = $1", sid) == 0
    r = await client.get("/ui/", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == f"/ui/p/{PROJECT}/releases"
    r = await client.get(UI + "/releases")
    csrf = csrf_of(await r.text())
    assert "token:bootstrap" in await r.text()
    r = await client.post("/ui/logout", data={}, allow_redirects=False)
    assert r.status == 403  # logout is a form too
    r = await client.post("/ui/logout", data={"_csrf": csrf}, allow_redirects=False)
    assert r.status == 303
    client.session.cookie_jar.update_cookies({"ota_session": sid})  # a replayed cookie is dead server-side
    r = await client.get(UI + "/releases", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].startswith("/ui/login")


async def test_secure_cookie_behind_https(aiohttp_client, database_url, data_dir):
    from gateway.app import init_app

    s = Settings(database_url=database_url, data_dir=data_dir, public_url="https://ota.example.com", workers=1)
    client = await aiohttp_client(init_app(s))
    r = await client.get("/ui/login")
    token = csrf_of(await r.text())
    assert "Secure" in r.headers["Set-Cookie"]
    r = await client.post("/ui/login", data={"_csrf": token, "secret": ORG_TOKEN}, allow_redirects=False)
    # the pre-login cookie is Secure, so a plain-http client cannot send it back: refused
    assert r.status == 403


async def test_activation_confirm_csrf_roles_and_audit(client):
    rel = (await upload_release(client, b"ui-release" * 300, version="4.0.0", software_type="uifw",
                                hardware_version="mp"))["data"]
    csrf = await login(client, ORG_TOKEN)
    r = await client.get(UI + "/releases")
    assert "4.0.0" in await r.text()
    r = await client.get(UI + f"/releases/{rel['id']}")
    html = await r.text()
    assert rel["artifacts"][0]["sha256"] in html and 'id="activate"' in html
    form = {"release_id": str(rel["id"]), "cohort": "default", "percent": "10"}
    # without a valid CSRF token: 403, nothing happens
    for bad in ({}, {"_csrf": "nope"}):
        r = await client.post(UI + "/deployments", data={**form, **bad, "confirm": "yes"})
        assert r.status == 403 and "CSRF" in await r.text()
    # the first POST only asks for confirmation
    r = await client.post(UI + "/deployments", data={**form, "_csrf": csrf})
    assert r.status == 200 and 'value="yes"' in await r.text() and "10 %" in await r.text()
    r = await client.get(P + "/deployments", params={"cohort": "default"}, headers=auth_headers())
    assert not [d for d in (await r.json())["data"] if d["release"]["id"] == rel["id"]]
    r = await client.post(UI + "/deployments", data={**form, "_csrf": csrf, "confirm": "yes"})
    assert r.status == 200 and "Done" in await r.text()
    r = await client.get(P + "/deployments", params={"cohort": "default", "status": "active"}, headers=auth_headers())
    dep = next(d for d in (await r.json())["data"] if d["release"]["id"] == rel["id"])
    assert (dep["type"], dep["rollout_percent"], dep["deployer"]) == ("staged_rollout", 10, "token:bootstrap")
    # change the rollout, then abort, each confirmed
    r = await client.post(UI + f"/deployments/{dep['id']}/rollout", data={"_csrf": csrf, "percent": "50",
                                                                        "confirm": "yes"})
    assert r.status == 200, await r.text()
    r = await client.post(UI + f"/deployments/{dep['id']}/rollout", data={"_csrf": csrf, "percent": "150"})
    assert r.status == 400 and "0 to 100" in await r.text()
    r = await client.get(UI + "/cohorts/default?software_type=uifw")
    assert r.status == 200 and 'id="matrix"' in await r.text() and "Delta" not in await r.text()
    r = await client.post(UI + f"/deployments/{dep['id']}/abort", data={"_csrf": csrf})
    assert r.status == 200 and "Confirm" in await r.text()
    r = await client.post(UI + f"/deployments/{dep['id']}/abort", data={"_csrf": csrf, "confirm": "yes"})
    assert r.status == 200
    r = await client.post(UI + f"/deployments/{dep['id']}/abort", data={"_csrf": csrf, "confirm": "yes"})
    assert r.status == 409 and "already deactivated" in await r.text()
    # the same audit entries as the API writes, visible on the audit page
    r = await client.get(P + "/audit-log", params={"action": "deployment."}, headers=auth_headers())
    actions = [(e["action"], e["actor"]) for e in (await r.json())["data"]][:3]
    assert actions == [("deployment.deactivate", "token:bootstrap"), ("deployment.update", "token:bootstrap"),
                       ("deployment.create", "token:bootstrap")]
    r = await client.get(UI + "/audit?action=deployment.")
    html = await r.text()
    assert html.count('data-action="deployment.') >= 3


async def test_viewer_and_protected_cohorts_and_approvals(client):
    rel = (await upload_release(client, b"ui-prot" * 300, version="5.0.0", software_type="uiprot",
                                hardware_version="mp"))["data"]
    for slug, settings in (("vault", {"protected": True}), ("gated", {"requires_approval": True})):
        r = await client.post(P + "/cohorts", json={"slug": slug, "name": slug}, headers=auth_headers())
        assert r.status == 201
        r = await client.patch(P + f"/cohorts/{slug}", json=settings, headers=auth_headers())
        assert r.status == 200
    viewer = await make_token(client, "viewer", "ui-viewer")
    editor = await make_token(client, "editor", "ui-editor")
    form = {"release_id": str(rel["id"]), "percent": "", "confirm": "yes"}

    csrf = await login(client, viewer)
    r = await client.get(UI + f"/releases/{rel['id']}")
    assert 'id="activate"' not in await r.text()
    r = await client.post(UI + "/deployments", data={**form, "cohort": "default", "_csrf": csrf})
    assert r.status == 403 and "needs the editor role; you are viewer" in await r.text()

    csrf = await login(client, editor)
    r = await client.get(UI + f"/releases/{rel['id']}")
    assert re.search(r'<option value="vault" disabled>', await r.text())
    r = await client.post(UI + "/deployments", data={**form, "cohort": "vault", "_csrf": csrf})
    assert r.status == 403 and "protected" in await r.text()
    r = await client.post(UI + "/deployments", data={**form, "cohort": "gated", "_csrf": csrf})
    assert r.status == 200 and "Approval requested" in await r.text()
    r = await client.get(UI + "/requests")
    html = await r.text()
    assert "ui-editor" in html and "/approve" not in html  # nobody approves their own request
    rid = (await (await client.get(P + "/activation-requests", headers=auth_headers())).json())["data"][-1]["id"]

    csrf = await login(client, ORG_TOKEN)
    r = await client.get(UI + "/requests")
    assert f"/requests/{rid}/approve" in await r.text()
    r = await client.post(UI + f"/requests/{rid}/approve", data={"_csrf": csrf})
    assert r.status == 200 and "approved" in await r.text()
    r = await client.get(P + "/deployments", params={"cohort": "gated", "status": "active"}, headers=auth_headers())
    assert [d["release"]["version"] for d in (await r.json())["data"]] == ["5.0.0"]


async def test_revoked_token_and_expired_session_end_the_session(client):
    token = await make_token(client, "editor", "ui-short")
    await login(client, token)
    pool = client.server.app[POOL]
    await pool.execute("UPDATE ui_sessions SET expires_at = now() - interval '1 second' WHERE token_id = "
                       "(SELECT id FROM api_tokens WHERE name = 'ui-short')")
    r = await client.get(UI + "/releases", allow_redirects=False)
    assert r.status == 303
    await login(client, token)
    tid = await pool.fetchval("SELECT id FROM api_tokens WHERE name = 'ui-short'")
    r = await client.delete(O + f"/tokens/{tid}", headers=auth_headers())
    assert r.status == 204
    r = await client.get(UI + "/releases", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].startswith("/ui/login")


async def test_user_login_devices_inspect_and_html_errors(client):
    pool = client.server.app[POOL]
    from gateway.crypto.tokens import hash_user_secret

    org = await pool.fetchval("SELECT id FROM organizations WHERE slug = $1", ORG)
    await bootstrap_store.ensure_user(pool, org, "rm@example.com", hash_user_secret("correct horse battery"), "editor")
    r = await client.post(P + "/devices", json={"device_serial": "UI-DEV-1", "hardware_version": "mp"},
                          headers=auth_headers())
    assert r.status == 201
    await login(client, "correct horse battery", email="rm@example.com")
    r = await client.get(UI + "/devices?serial=UI-DEV")
    assert "1 device" in await r.text() and "/devices/UI-DEV-1" in await r.text()
    r = await client.get(UI + "/devices?serial=UI-DEV-1", allow_redirects=False)  # an exact serial: its page
    assert r.status == 303 and r.headers["Location"].endswith("/devices/UI-DEV-1")
    r = await client.get(UI + "/devices/UI-DEV-1")
    html = await r.text()
    assert r.status == 200 and "Inspect" in html and "user:rm@example.com" in html
    r = await client.get(UI + "/devices/NOPE")
    assert r.status == 404 and "text/html" in r.headers["Content-Type"] and "device NOPE not found" in await r.text()
    r = await client.get(UI + "/no/such/page")
    assert r.status == 404 and "text/html" in r.headers["Content-Type"]
    r = await client.get("/ui/p/other-project/releases")
    assert r.status == 404
    r = await client.get("/not-ui")  # the API's JSON 404 is unchanged
    assert r.status == 404 and (await r.json())["error"]["type"] == "not_found"


async def test_no_external_requests(client):
    """Every page and the stylesheet reference nothing outside the gateway (air-gapped)."""
    await login(client, ORG_TOKEN)
    css = await (await client.get("/ui/static/ui.css")).text()
    assert "url(" not in css and "@import" not in css
    pages = ["/ui/login", UI + "/releases", UI + "/cohorts", UI + "/cohorts/default", UI + "/devices",
             UI + "/requests", UI + "/audit"]
    for path in pages:
        r = await client.get(path)
        assert r.status == 200, (path, await r.text())
        html = await r.text()
        refs = re.findall(r'\s(?:src|href|action)="([^"]*)"', html)
        bad = [ref for ref in refs if not ref.startswith(("/", "?", "#")) or ref.startswith("//")]
        assert refs and not bad, (path, bad)
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]


def counts(text: str) -> dict[str, float]:
    return {k: float(v) for k, _, v in (line.rpartition(" ") for line in text.splitlines())
            if k and not k.startswith("#")}


async def test_dashboard_requests_are_counted_and_shed_like_the_api(client):
    """Each dashboard request is counted under its route template and status; under overload the
    dashboard sheds like the API, with its HTML error page, 503 and Retry-After."""
    from gateway.http.errors import Inflight

    route = "/ui/p/{project}/releases"
    before = counts(await (await client.get("/metrics")).text())
    assert (await client.get(UI + "/releases", allow_redirects=False)).status == 303  # no session yet
    await login(client, ORG_TOKEN)  # its last step: GET releases, 200
    assert (await client.get("/ui/no/such/page")).status == 404
    old = Inflight.cap
    Inflight.cap = 0
    try:
        r = await client.get(UI + "/releases")
        assert r.status == 503 and r.headers["Retry-After"] == "1" and "text/html" in r.headers["Content-Type"]
        assert "overloaded" in await r.text() and "default-src 'none'" in r.headers["Content-Security-Policy"]
    finally:
        Inflight.cap = old
    after = counts(await (await client.get("/metrics")).text())

    def delta(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    for status, n in (("303", 1), ("200", 1), ("503", 1)):
        assert delta(f'ota_gateway_http_requests_total{{method="GET",route="{route}",status="{status}"}}') == n
    assert delta(f'ota_gateway_http_request_duration_seconds_count{{route="{route}"}}') == 2  # not the shed one
    assert delta('ota_gateway_http_requests_total{method="GET",route="/ui/{tail:.*}",status="404"}') == 1
    assert delta('ota_gateway_http_requests_total{method="POST",route="/ui/login",status="303"}') == 1
