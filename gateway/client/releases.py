"""The release subcommands: `upload` (a payload), `releases`, `deployments`, `activate` and `abort`
(a release on a cohort) and `matrix` (who runs what in a cohort). One function per subcommand,
then the parsers that wire them."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from typing import Any

from gateway.client import preview
from gateway.client.commands import Commands
from gateway.client.http import Client, CliError
from gateway.client.output import format_matrix, table
from gateway.progress import Progress, working

Result = tuple[Any, str]


def _file_md5(path: str) -> str:
    md5 = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            md5.update(chunk)
    return md5.hexdigest()


def _extra_info(pairs: list[str] | None) -> dict[str, str]:
    extra = {}
    for kv in pairs or []:
        k, eq, v = kv.partition("=")
        if not eq:
            raise CliError(f"--extra expects key=value, got {kv!r}")
        extra[k] = v
    return extra


def upload(c: Client, a: argparse.Namespace) -> Result:
    if not os.path.isfile(a.file):
        raise CliError(f"{a.file}: no such file")
    if bool(a.version) == bool(a.delta_to):
        raise CliError("give exactly one of --version or --delta-from/--delta-to")
    if bool(a.delta_from) != bool(a.delta_to):
        raise CliError("--delta-from and --delta-to go together")
    md5 = _file_md5(a.file)
    size = os.path.getsize(a.file)
    up = c.call("POST", c.project_path("/upload"), {"kind": "OTA_PAYLOAD", "size": size})
    c.put_file(up["upload_url"], a.file, Progress(size, f"uploading {os.path.basename(a.file)}"))
    extra = _extra_info(a.extra)
    version: Any = [a.delta_from, a.delta_to] if a.delta_to else a.version
    body = {"file": {"token": up["token"], "md5": md5, "name": os.path.basename(a.file)},
            "software_version": {"version": version, "software_type": a.software_type,
                                 **({"revision": a.revision} if a.revision else {})},
            "hardware_version": a.hardware_version, "must_pass_through": a.must_pass_through,
            "notes": a.notes or "", **({"extra_info": extra} if extra else {})}
    d = c.call("POST", c.project_path("/releases/ota_payload"), body)
    label = f"{a.delta_from} -> {a.delta_to}" if a.delta_to else a.version
    return d, f"release {label} ({a.software_type}) has a payload for {a.hardware_version}"


def releases_list(c: Client, a: argparse.Namespace) -> Result:
    d = c.call("GET", c.project_path("/releases"), query={"software_type": a.software_type})
    return d, table([[x["id"], x["software_type"], (f"{x['delta_from']} -> " if x["delta_from"] else "")
                      + x["version"], "mpt" if x["must_pass_through"] else ("delta" if x["is_delta"] else "full"),
                      ",".join(p["hardware_version"] for p in x["artifacts"]), x.get("active_deployments")]
                     for x in d], ["id", "software_type", "version", "kind", "hardware", "active"])


def releases_get(c: Client, a: argparse.Namespace) -> Result:
    d = c.call("GET", c.project_path(f"/releases/{a.release}"))
    return d, json.dumps(d, indent=2)


def releases_delete(c: Client, a: argparse.Namespace) -> Result:
    c.call("DELETE", c.project_path(f"/releases/{a.release}"))
    return None, f"deleted release {a.release}"


def deployments(c: Client, a: argparse.Namespace) -> Result:
    d = c.call("GET", c.project_path("/deployments"), query={"cohort": a.cohort})
    return d, table([[x["id"], x["cohort"]["slug"], (f"{x['release']['delta_from']} -> "
                                                     if x["release"]["delta_from"] else "") + x["release"]["version"],
                      x["type"], x["rollout_percent"], _staged(x), x["status"], x["deployer"], x["deployed_date"]]
                     for x in d],
                    ["id", "cohort", "release", "type", "percent", "staged", "status", "by", "date"])


def _staged(x: dict) -> str:
    """The actual staged count of an active staged rollout, next to its configured percentage."""
    if x.get("staged_devices") is None:
        return ""
    return f"{x['staged_devices']}/{x['cohort_devices']} ({100 * (x['staged_fraction'] or 0):.1f}%)"


def activate(c: Client, a: argparse.Namespace) -> Result:
    release: Any = [a.delta_from, a.release] if a.delta_from else a.release
    body = {"type": "normal" if a.percent in (None, 100) else "staged_rollout", "release": release,
            "cohort": a.cohort}
    if a.percent not in (None, 100):
        body["rollout_percent"] = a.percent
    if a.software_type:
        body["software_type"] = a.software_type
    body.update(preview.body(a))
    if "rollout_percent" in body:  # marking a large cohort as staged takes a moment
        with working(f"staging {a.percent} % of cohort {a.cohort}"):
            d = c.call("POST", c.project_path("/deployments"), body)
    else:
        d = c.call("POST", c.project_path("/deployments"), body)
    if d.get("dry_run"):
        return d, preview.format_preview(d)
    staged = f"; staged now: {_staged(d)}" if d.get("staged_devices") is not None else ""
    return d, (f"deployment {d['id']}: {a.release} on cohort {a.cohort} ({d['status']}, {d['rollout_percent']}%"
               f"{staged})")


def abort(c: Client, a: argparse.Namespace) -> Result:
    query = {"cohort": a.cohort}
    if a.delta_from:
        query.update(delta_from=a.delta_from, delta_to=a.release)
    else:
        query["release"] = a.release
    active = [x for x in c.call("GET", c.project_path("/deployments"), query=query) if x["active"]]
    if not active:
        raise CliError(f"no active deployment of {a.release} on cohort {a.cohort}")
    results = [c.call("DELETE", c.project_path(f"/deployments/{x['id']}"), query=preview.query(a)) for x in active]
    if any(isinstance(r, dict) and r.get("dry_run") for r in results):
        return results, "\n\n".join(preview.format_preview(r) for r in results)
    return results, "\n".join(f"deactivated deployment {x['id']}" for x in active)


def matrix(c: Client, a: argparse.Namespace) -> Result:
    d = c.call("GET", c.project_path(f"/cohorts/{a.cohort}/version-matrix"), query={"software_type": a.software_type})
    return d, format_matrix(d)


def add_upload(commands: Commands) -> None:
    x = commands.add("upload", "upload a firmware file as a release payload (progress bar on a terminal)", upload)
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


def add_releases(commands: Commands) -> None:
    s = commands.group("releases", "list, show and delete releases")
    s.add("list", releases_list).add_argument("--software-type")
    s.add("get", releases_get).add_argument("release")
    s.add("delete", releases_delete).add_argument("release")


def add_deployments(commands: Commands) -> None:
    commands.add("deployments", "list deployments (activations)", deployments).add_argument("--cohort")


def _release_on_cohort(x: argparse.ArgumentParser) -> None:
    x.add_argument("release", help="version (the to-version of a delta)")
    x.add_argument("--cohort", required=True)
    x.add_argument("--delta-from")


def add_activate(commands: Commands) -> None:
    x = commands.add("activate", "activate a release on a cohort (optionally staged)", activate)
    _release_on_cohort(x)
    x.add_argument("--percent", type=int, help="staged rollout percentage")
    x.add_argument("--software-type")
    preview.add_flags(x)


def add_abort(commands: Commands) -> None:
    x = commands.add("abort", "deactivate a release on a cohort", abort)
    _release_on_cohort(x)
    preview.add_flags(x)


def add_matrix(commands: Commands) -> None:
    x = commands.add("matrix", "the version matrix of a cohort", matrix)
    x.add_argument("--cohort", required=True)
    x.add_argument("--software-type")
