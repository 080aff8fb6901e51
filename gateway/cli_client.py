"""`ota-gateway` management subcommands: a thin client of the REST API.

Connection settings come from flags or the environment: --url/OTA_URL, --token/OTA_TOKEN,
--org/OTA_ORG, --project/OTA_PROJECT. Every command exits non-zero with the server's message on
failure; `--json` prints the raw `data` for scripts.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from gateway.progress import Progress, working


class CliError(Exception):
    pass


class Client:
    def __init__(self, url: str, token: str | None, org: str | None, project: str | None):
        self.url = url.rstrip("/")
        self.token = token
        self.org = org
        self.project = project

    def project_path(self, suffix: str = "") -> str:
        if not self.org or not self.project:
            raise CliError("--org and --project (or OTA_ORG / OTA_PROJECT) are required")
        return f"/api/v0/organizations/{urllib.parse.quote(self.org)}/projects/{urllib.parse.quote(self.project)}" \
               + suffix

    def call(self, method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
        if not self.token:
            raise CliError("--token (or OTA_TOKEN) is required")
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
            "User-Agent": "ota-gateway-cli"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                message = json.loads(raw)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode(errors="replace")[:300] or e.reason
            raise CliError(f"{message} (HTTP {e.code})") from None
        except urllib.error.URLError as e:
            raise CliError(f"cannot reach {self.url}: {e.reason}") from None
        result = json.loads(raw)["data"] if raw else None
        if status == 202 and isinstance(result, dict):
            raise Pending(result)  # nothing changed yet: say so instead of what would have changed
        return result


    def put_file(self, url: str, path: str, progress: Progress) -> None:
        """Stream a file to a signed upload URL (no Authorization: the URL carries it)."""
        size = os.path.getsize(path)

        def chunks():
            with open(path, "rb") as f:
                while chunk := f.read(256 * 1024):
                    progress.update(len(chunk))
                    yield chunk

        req = urllib.request.Request(url, data=chunks(), method="PUT", headers={
            "Content-Length": str(size), "Content-Type": "application/octet-stream", "User-Agent": "ota-gateway-cli"})
        try:
            with urllib.request.urlopen(req, timeout=3600) as r:
                r.read()
        except urllib.error.HTTPError as e:
            raise CliError(f"upload failed (HTTP {e.code}): {e.read().decode(errors='replace')[:300]}") from None
        except urllib.error.URLError as e:
            raise CliError(f"cannot reach the upload URL: {e.reason}") from None
        finally:
            progress.close()


def _upload(c: Client, a: argparse.Namespace) -> tuple[Any, str]:
    import hashlib

    if not os.path.isfile(a.file):
        raise CliError(f"{a.file}: no such file")
    if bool(a.version) == bool(a.delta_to):
        raise CliError("give exactly one of --version or --delta-from/--delta-to")
    if bool(a.delta_from) != bool(a.delta_to):
        raise CliError("--delta-from and --delta-to go together")
    md5 = hashlib.md5()
    with open(a.file, "rb") as f:
        while chunk := f.read(1024 * 1024):
            md5.update(chunk)
    size = os.path.getsize(a.file)
    up = c.call("POST", c.project_path("/upload"), {"kind": "OTA_PAYLOAD", "size": size})
    c.put_file(up["upload_url"], a.file, Progress(size, f"uploading {os.path.basename(a.file)}"))
    extra = {}
    for kv in a.extra or []:
        k, eq, v = kv.partition("=")
        if not eq:
            raise CliError(f"--extra expects key=value, got {kv!r}")
        extra[k] = v
    version: Any = [a.delta_from, a.delta_to] if a.delta_to else a.version
    body = {"file": {"token": up["token"], "md5": md5.hexdigest(), "name": os.path.basename(a.file)},
            "software_version": {"version": version, "software_type": a.software_type,
                                 **({"revision": a.revision} if a.revision else {})},
            "hardware_version": a.hardware_version, "must_pass_through": a.must_pass_through,
            "notes": a.notes or "", **({"extra_info": extra} if extra else {})}
    d = c.call("POST", c.project_path("/releases/ota_payload"), body)
    label = f"{a.delta_from} -> {a.delta_to}" if a.delta_to else a.version
    return d, f"release {label} ({a.software_type}) has a payload for {a.hardware_version}"


def _table(rows: list[list], headers: list[str]) -> str:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _onoff(v: str | None) -> bool | None:
    if v is None:
        return None
    if v.lower() in ("on", "true", "yes", "1"):
        return True
    if v.lower() in ("off", "false", "no", "0"):
        return False
    raise CliError(f"expected on/off, got {v!r}")


def format_matrix(m: dict) -> str:
    """A readable version matrix: rows = current version, columns = next version."""
    cols = m["columns"]
    rows = []
    for name, cells, total, share in zip(m["rows"], m["cells"], m["row_totals"], m["staged_share"]):
        rows.append([name] + [c or "." for c in cells] + [total, f"{share:.0%}"])
    out = [f"cohort {m['cohort']} · software type {m['software_type']} · {m['devices']} devices "
           f"({m['staged_devices']} staged)",
           _table(rows, ["current \\ next"] + cols + ["total", "staged"]), "", "active releases:"]
    for r in m["active_releases"]:
        label = f"{r['delta_from']} -> {r['version']}" if r["delta_from"] else r["version"]
        staged = f" staged {r['rollout_percent']}%" if r["staged"] else ""
        out.append(f"  {label:<20} {r['kind']}{staged}")
    out.append(f"target version: {m['target_version'] or '-'}"
               + (f" (staged: {m['staged_target_version']})" if m["staged_target_version"] != m["target_version"]
                  else ""))
    return "\n".join(out)


def format_inspect(d: dict) -> str:
    out = [f"device {d['device_serial']} · hardware {d['hardware_version'] or '-'} · cohort {d['cohort']}"
           f"{' · staged' if d['staged'] else ''}{'' if d['registered'] else ' · not registered'}"]
    for sw in d["software"]:
        out.append(f"\n[{sw['software_type']}] current version: {sw['current_version'] or '(none)'}")
        for proto in ("memfault", "ddi"):
            if proto in sw:
                a = sw[proto]
                out.append(f"  {proto:<9} -> {a.get('release') or 'nothing'} (reason: {a.get('reason')})")
        rules = sw["rules"]
        out.append(f"  override: {rules['override']['release'] if rules['override'] else 'none'}")
        t = rules["table"]
        if t and t.get("table", True) is not None and "full" in t:
            out.append(f"  delta from current: {t['delta']['to'] if t['delta'] else 'none'}")
            mpts = ", ".join(m["version"] for m in t["must_pass_through"]) or "none"
            out.append(f"  must-pass-through: {mpts}")
            out.append(f"  top full: {t['full']['version'] if t['full'] else 'none'}"
                       f"  (version checking {'on' if t['version_checking'] else 'off'})")
        for k in sw.get("with_project_key_cohort_override", []):
            out.append(f"  with key {k['key_name'] or k['key_id']} (cohort {k['cohort']}): "
                       f"{k['release'] or 'nothing'} ({k['reason']})")
    return "\n".join(out)


def _request_what(q: dict) -> str:
    """What an approval request would change, in one cell."""
    if q["action"] in ("activate", "deactivate") and q.get("release"):
        rel = q["release"]
        what = (f"{rel['delta_from']} -> " if rel["delta_from"] else "") + rel["version"]
        return what + (f" ({q['rollout_percent']}%)" if q["type"] == "staged_rollout" else "")
    return ", ".join(f"{k}={v}" for k, v in sorted((q.get("change") or {}).items()))


class Pending(Exception):
    """The server filed an approval request instead of making the change (HTTP 202)."""

    def __init__(self, request: dict):
        super().__init__(request)
        self.request = request


def run(args: argparse.Namespace) -> int:
    c = Client(args.url, args.token, args.org, args.project)
    try:
        result, text = _dispatch(c, args)
    except CliError as e:
        print(f"ota-gateway: error: {e}", file=sys.stderr)
        return 1
    except Pending as p:
        req = p.request
        result = req
        text = (f"{req.get('action', 'change')} request {req.get('id')} in cohort {req.get('cohort')} is waiting "
                "for approval by another identity; nothing has changed yet")
        if req.get("key"):
            text += f"\nproject key (works once approved; shown once): {req['key']}"
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    elif text:
        print(text)
    return 0


def _dispatch(c: Client, a: argparse.Namespace) -> tuple[Any, str]:
    P = c.project_path
    cmd, sub = a.cmd, getattr(a, "sub", None)
    if cmd == "upload":
        return _upload(c, a)
    if cmd == "cohorts":
        if sub == "list":
            d = c.call("GET", P("/cohorts"))
            return d, _table([[x["slug"], x["name"], x.get("device_count"), x["version_checking"], x["protected"],
                               x["requires_approval"]] for x in d],
                             ["slug", "name", "devices", "version_checking", "protected", "approval"])
        if sub == "create":
            d = c.call("POST", P("/cohorts"), {"slug": a.slug, "name": a.name or a.slug})
            return d, f"created cohort {d['slug']}"
        settings = {k: v for k, v in {
            "version_checking": _onoff(a.version_checking), "protected": _onoff(a.protected),
            "requires_approval": _onoff(a.requires_approval), "ddi_polling_interval": a.ddi_polling_interval,
            "ddi_update_type": a.ddi_update_type, "name": a.name}.items() if v is not None}
        d = c.call("PATCH", P(f"/cohorts/{a.slug}"), settings)
        return d, f"updated cohort {a.slug}: " + ", ".join(f"{k}={v}" for k, v in settings.items())
    if cmd == "devices":
        if sub == "list":
            d = c.call("GET", P("/devices"), query={"cohort": a.cohort, "per_page": a.limit})
            return d, _table([[x["device_serial"], x["hardware_version"], x["cohort"]["slug"], x["staged"],
                               json.dumps(x["software_versions"]), x["last_seen"]] for x in d],
                             ["serial", "hardware", "cohort", "staged", "versions", "last_seen"])
        if sub == "get":
            d = c.call("GET", P(f"/devices/{a.serial}"))
            return d, json.dumps(d, indent=2)
        if sub == "add":
            d = c.call("POST", P("/devices"), {"device_serial": a.serial, "hardware_version": a.hardware_version,
                                               "cohort": a.cohort or "default"})
            return d, f"added {a.serial} to cohort {d['cohort']['slug']}"
        if sub == "move":
            d = c.call("PATCH", P(f"/devices/{a.serial}"), {"cohort": a.cohort})
            return d, f"moved {a.serial} to cohort {a.cohort}"
        if sub == "stage":
            body: dict = {"staged": not a.unstage}
            if a.serial:
                body["serials"] = a.serial
            else:
                body.update({k: v for k, v in {"limit": a.limit, "current_version": a.current_version,
                                               "software_type": a.software_type, "hardware_version": a.hardware_version,
                                               "order": a.order}.items() if v is not None})
            with working(f"{'unstaging' if a.unstage else 'staging'} devices of cohort {a.cohort}"):
                d = c.call("POST", P(f"/cohorts/{a.cohort}/staging"), body)
            return d, f"{'unstaged' if a.unstage else 'staged'} {d['changed']} device(s); cohort {a.cohort} now " \
                      f"has {d['staged']} of {d['devices']} staged"
        if sub == "override":
            body = {"release": a.release}
            if a.software_type:
                body["software_type"] = a.software_type
            d = c.call("PUT", P(f"/devices/{a.serial}/release-override"), body)
            return d, f"{a.serial} is pinned to release {a.release}"
        if sub == "clear-override":
            d = c.call("DELETE", P(f"/devices/{a.serial}/release-override"))
            return d, f"override of {a.serial} cleared"
        d = c.call("GET", P(f"/devices/{a.serial}/history"))
        return d, _table([[x["date"], x["software_type"], x["previous_version"], x["version"], x["protocol"]]
                          for x in d], ["date", "software_type", "from", "to", "protocol"])
    if cmd == "keys":
        if sub == "list":
            d = c.call("GET", P("/project-keys"))
            return d, _table([[x["id"], x["name"], x["cohort_override"], x["created_date"], x["revoked_date"]]
                              for x in d], ["id", "name", "cohort_override", "created", "revoked"])
        if sub == "create":
            d = c.call("POST", P("/project-keys"), {"name": a.name or "", "cohort_override": a.cohort_override})
            return d, f"project key {d['id']}: {d['key']}\n(shown once: store it now)"
        c.call("DELETE", P(f"/project-keys/{a.id}"))
        return None, f"revoked project key {a.id}"
    if cmd == "releases":
        if sub == "list":
            d = c.call("GET", P("/releases"), query={"software_type": a.software_type})
            return d, _table([[x["id"], x["software_type"], (f"{x['delta_from']} -> " if x["delta_from"] else "")
                               + x["version"], "mpt" if x["must_pass_through"] else ("delta" if x["is_delta"] else "full"),
                               ",".join(p["hardware_version"] for p in x["artifacts"]), x.get("active_deployments")]
                              for x in d], ["id", "software_type", "version", "kind", "hardware", "active"])
        if sub == "get":
            d = c.call("GET", P(f"/releases/{a.release}"))
            return d, json.dumps(d, indent=2)
        c.call("DELETE", P(f"/releases/{a.release}"))
        return None, f"deleted release {a.release}"
    if cmd == "deployments":
        d = c.call("GET", P("/deployments"), query={"cohort": a.cohort})
        return d, _table([[x["id"], x["cohort"]["slug"], (f"{x['release']['delta_from']} -> "
                                                          if x["release"]["delta_from"] else "") + x["release"]["version"],
                           x["type"], x["rollout_percent"], x["status"], x["deployer"], x["deployed_date"]] for x in d],
                         ["id", "cohort", "release", "type", "percent", "status", "by", "date"])
    if cmd == "activate":
        release: Any = [a.delta_from, a.release] if a.delta_from else a.release
        body = {"type": "normal" if a.percent in (None, 100) else "staged_rollout", "release": release,
                "cohort": a.cohort}
        if a.percent not in (None, 100):
            body["rollout_percent"] = a.percent
        if a.software_type:
            body["software_type"] = a.software_type
        if "rollout_percent" in body:  # marking a large cohort as staged takes a moment
            with working(f"staging {a.percent} % of cohort {a.cohort}"):
                d = c.call("POST", P("/deployments"), body)
        else:
            d = c.call("POST", P("/deployments"), body)
        return d, f"deployment {d['id']}: {a.release} on cohort {a.cohort} ({d['status']}, {d['rollout_percent']}%)"
    if cmd == "abort":
        query = {"cohort": a.cohort}
        if a.delta_from:
            query.update(delta_from=a.delta_from, delta_to=a.release)
        else:
            query["release"] = a.release
        active = [x for x in c.call("GET", P("/deployments"), query=query) if x["active"]]
        if not active:
            raise CliError(f"no active deployment of {a.release} on cohort {a.cohort}")
        results = [c.call("DELETE", P(f"/deployments/{x['id']}")) for x in active]
        return results, "\n".join(f"deactivated deployment {x['id']}" for x in active)
    if cmd == "requests":
        if sub == "list":
            d = c.call("GET", P("/activation-requests"), query={"status": a.status})
            return d, _table([[x["id"], x["action"], x["cohort"], _request_what(x), x["status"], x["requested_by"]]
                              for x in d], ["id", "action", "cohort", "change", "status", "requested_by"])
        d = c.call("POST", P(f"/activation-requests/{a.id}/{sub}"))
        return d, f"request {a.id} {d['status']}"
    if cmd == "matrix":
        d = c.call("GET", P(f"/cohorts/{a.cohort}/version-matrix"), query={"software_type": a.software_type})
        return d, format_matrix(d)
    if cmd == "inspect":
        d = c.call("GET", P(f"/devices/{a.serial}/inspect"), query={
            "software_type": a.software_type, "current_version": a.current_version,
            "hardware_version": a.hardware_version})
        return d, format_inspect(d)
    if cmd == "audit":
        d = c.call("GET", P("/audit-log"), query={"limit": a.limit, "action": a.action, "actor": a.actor})
        return d, _table([[x["id"], x["date"], x["actor"], x["action"], x["object"]] for x in d],
                         ["id", "date", "actor", "action", "object"])
    raise CliError(f"unknown command {cmd}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the management subcommands to the `ota-gateway` parser."""
    def connection_flags(suppress: bool) -> argparse.ArgumentParser:
        # the same flags are accepted before and after a sub-subcommand; the inner copies must not
        # overwrite values given to the outer ones with their defaults
        p = argparse.ArgumentParser(add_help=False)
        d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
        p.add_argument("--url", default=d(os.environ.get("OTA_URL", "http://127.0.0.1:8080")),
                       help="gateway base URL (OTA_URL)")
        p.add_argument("--token", default=d(os.environ.get("OTA_TOKEN")), help="org API token (OTA_TOKEN)")
        p.add_argument("--org", default=d(os.environ.get("OTA_ORG")), help="organization slug (OTA_ORG)")
        p.add_argument("--project", default=d(os.environ.get("OTA_PROJECT")), help="project slug (OTA_PROJECT)")
        p.add_argument("--json", action="store_true", default=d(False), help="print raw JSON")
        return p

    common, inner = connection_flags(False), connection_flags(True)

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, parents=[common])
        p.set_defaults(func=run, cmd=name)
        return p

    class _Subs:
        def __init__(self, p: argparse.ArgumentParser):
            self._s = p.add_subparsers(dest="sub", required=True)

        def add_parser(self, name: str, **kw) -> argparse.ArgumentParser:
            return self._s.add_parser(name, parents=[inner], **kw)

    def subs(p: argparse.ArgumentParser) -> _Subs:
        return _Subs(p)

    x = cmd("upload", "upload a firmware file as a release payload (progress bar on a terminal)")
    x.add_argument("file")
    x.add_argument("--hardware-version", required=True)
    x.add_argument("--software-type", required=True)
    x.add_argument("--version", help="a full release's version")
    x.add_argument("--delta-from")
    x.add_argument("--delta-to")
    x.add_argument("--must-pass-through", action="store_true")
    x.add_argument("--notes")
    x.add_argument("--revision")
    x.add_argument("--extra", action="append", metavar="KEY=VALUE", help="payload metadata (repeatable)")

    s = subs(cmd("cohorts", "list, create and configure cohorts"))
    s.add_parser("list")
    x = s.add_parser("create")
    x.add_argument("slug")
    x.add_argument("--name")
    x = s.add_parser("set")
    x.add_argument("slug")
    x.add_argument("--name")
    x.add_argument("--version-checking", metavar="on|off")
    x.add_argument("--protected", metavar="on|off")
    x.add_argument("--requires-approval", metavar="on|off")
    x.add_argument("--ddi-polling-interval", type=int, metavar="SECONDS")
    x.add_argument("--ddi-update-type", choices=["attempt", "forced"])

    s = subs(cmd("devices", "list, add, move, stage and pin devices"))
    x = s.add_parser("list")
    x.add_argument("--cohort")
    x.add_argument("--limit", type=int, default=100)
    for name in ("get", "history", "clear-override"):
        s.add_parser(name).add_argument("serial")
    x = s.add_parser("add")
    x.add_argument("serial")
    x.add_argument("--hardware-version", required=True)
    x.add_argument("--cohort")
    x = s.add_parser("move")
    x.add_argument("serial")
    x.add_argument("cohort")
    x = s.add_parser("stage", help="stage (or --unstage) named devices or a filtered set of a cohort")
    x.add_argument("cohort")
    x.add_argument("--serial", action="append", help="repeatable; otherwise the filters below apply")
    x.add_argument("--limit", type=int)
    x.add_argument("--current-version")
    x.add_argument("--software-type")
    x.add_argument("--hardware-version")
    x.add_argument("--order", choices=["last_seen", "random"])
    x.add_argument("--unstage", action="store_true")
    x = s.add_parser("override", help="pin a device to a release")
    x.add_argument("serial")
    x.add_argument("release")
    x.add_argument("--software-type")

    s = subs(cmd("keys", "project keys (device credentials)"))
    s.add_parser("list")
    x = s.add_parser("create")
    x.add_argument("--name")
    x.add_argument("--cohort-override", help="cohort every device using this key is served from")
    s.add_parser("revoke").add_argument("id", type=int)

    s = subs(cmd("releases", "list, show and delete releases"))
    s.add_parser("list").add_argument("--software-type")
    s.add_parser("get").add_argument("release")
    s.add_parser("delete").add_argument("release")

    cmd("deployments", "list deployments (activations)").add_argument("--cohort")
    for name, help_ in (("activate", "activate a release on a cohort (optionally staged)"),
                        ("abort", "deactivate a release on a cohort")):
        x = cmd(name, help_)
        x.add_argument("release", help="version (the to-version of a delta)")
        x.add_argument("--cohort", required=True)
        x.add_argument("--delta-from")
        if name == "activate":
            x.add_argument("--percent", type=int, help="staged rollout percentage")
            x.add_argument("--software-type")

    s = subs(cmd("requests", "activation requests awaiting approval"))
    s.add_parser("list").add_argument("--status", default="pending")
    s.add_parser("approve").add_argument("id", type=int)
    s.add_parser("reject").add_argument("id", type=int)

    x = cmd("matrix", "the version matrix of a cohort")
    x.add_argument("--cohort", required=True)
    x.add_argument("--software-type")
    x = cmd("inspect", "what a device gets next on each protocol, and why")
    x.add_argument("serial")
    x.add_argument("--software-type")
    x.add_argument("--current-version")
    x.add_argument("--hardware-version")
    x = cmd("audit", "the audit log")
    x.add_argument("--limit", type=int, default=50)
    x.add_argument("--action")
    x.add_argument("--actor")
