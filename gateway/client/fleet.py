"""The fleet subcommands: `cohorts`, `devices`, `keys` (project keys) and `inspect` (what a device
gets next, and why). One function per subcommand, then the parsers that wire them."""
from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.client import preview
from gateway.client.commands import Commands
from gateway.client.http import Client
from gateway.client.output import format_inspect, onoff, table
from gateway.progress import working

Result = tuple[Any, str]


def cohorts_list(c: Client, a: argparse.Namespace) -> Result:
    d = c.call("GET", c.project_path("/cohorts"))
    return d, table([[x["slug"], x["name"], x.get("device_count"), x["version_checking"], x["protected"],
                      x["requires_approval"]] for x in d],
                    ["slug", "name", "devices", "version_checking", "protected", "approval"])


def cohorts_create(c: Client, a: argparse.Namespace) -> Result:
    d = c.call("POST", c.project_path("/cohorts"), {"slug": a.slug, "name": a.name or a.slug})
    return d, f"created cohort {d['slug']}"


def cohorts_set(c: Client, a: argparse.Namespace) -> Result:
    settings = {k: v for k, v in {
        "version_checking": onoff(a.version_checking), "protected": onoff(a.protected),
        "requires_approval": onoff(a.requires_approval), "ddi_polling_interval": a.ddi_polling_interval,
        "ddi_update_type": a.ddi_update_type, "name": a.name}.items() if v is not None}
    d = c.call("PATCH", c.project_path(f"/cohorts/{a.slug}"), settings)
    return d, f"updated cohort {a.slug}: " + ", ".join(f"{k}={v}" for k, v in settings.items())


def devices_list(c: Client, a: argparse.Namespace) -> Result:
    d = c.call("GET", c.project_path("/devices"), query={"cohort": a.cohort, "per_page": a.limit})
    return d, table([[x["device_serial"], x["hardware_version"], x["cohort"]["slug"], x["staged"],
                      json.dumps(x["software_versions"]), x["last_seen"]] for x in d],
                    ["serial", "hardware", "cohort", "staged", "versions", "last_seen"])


def devices_get(c: Client, a: argparse.Namespace) -> Result:
    d = c.call("GET", c.project_path(f"/devices/{a.serial}"))
    return d, json.dumps(d, indent=2)


def devices_history(c: Client, a: argparse.Namespace) -> Result:
    d = c.call("GET", c.project_path(f"/devices/{a.serial}/history"))
    return d, table([[x["date"], x["software_type"], x["previous_version"], x["version"], x["protocol"]]
                     for x in d], ["date", "software_type", "from", "to", "protocol"])


def devices_clear_override(c: Client, a: argparse.Namespace) -> Result:
    d = c.call("DELETE", c.project_path(f"/devices/{a.serial}/release-override"), query=preview.query(a))
    return d, preview.shown(d, f"override of {a.serial} cleared")


def devices_add(c: Client, a: argparse.Namespace) -> Result:
    d = c.call("POST", c.project_path("/devices"), {"device_serial": a.serial, "hardware_version": a.hardware_version,
                                                    "cohort": a.cohort or "default"})
    return d, f"added {a.serial} to cohort {d['cohort']['slug']}"


def devices_move(c: Client, a: argparse.Namespace) -> Result:
    d = c.call("PATCH", c.project_path(f"/devices/{a.serial}"), {"cohort": a.cohort, **preview.body(a)})
    return d, preview.shown(d, f"moved {a.serial} to cohort {a.cohort}")


def devices_stage(c: Client, a: argparse.Namespace) -> Result:
    body: dict = {"staged": not a.unstage}
    if a.serial:
        body["serials"] = a.serial
    else:
        body.update({k: v for k, v in {"limit": a.limit, "current_version": a.current_version,
                                       "software_type": a.software_type, "hardware_version": a.hardware_version,
                                       "order": a.order}.items() if v is not None})
    with working(f"{'unstaging' if a.unstage else 'staging'} devices of cohort {a.cohort}"):
        d = c.call("POST", c.project_path(f"/cohorts/{a.cohort}/staging"), {**body, **preview.body(a)})
    if d.get("dry_run"):
        return d, preview.format_preview(d)
    return d, f"{'unstaged' if a.unstage else 'staged'} {d['changed']} device(s); cohort {a.cohort} now " \
              f"has {d['staged']} of {d['devices']} staged"


def devices_override(c: Client, a: argparse.Namespace) -> Result:
    body = {"release": a.release}
    if a.software_type:
        body["software_type"] = a.software_type
    d = c.call("PUT", c.project_path(f"/devices/{a.serial}/release-override"), {**body, **preview.body(a)})
    return d, preview.shown(d, f"{a.serial} is pinned to release {a.release}")


def keys_list(c: Client, a: argparse.Namespace) -> Result:
    d = c.call("GET", c.project_path("/project-keys"))
    return d, table([[x["id"], x["name"], x["cohort_override"], x["created_date"], x["revoked_date"]]
                     for x in d], ["id", "name", "cohort_override", "created", "revoked"])


def keys_create(c: Client, a: argparse.Namespace) -> Result:
    d = c.call("POST", c.project_path("/project-keys"), {"name": a.name or "", "cohort_override": a.cohort_override})
    return d, f"project key {d['id']}: {d['key']}\n(shown once: store it now)"


def keys_revoke(c: Client, a: argparse.Namespace) -> Result:
    c.call("DELETE", c.project_path(f"/project-keys/{a.id}"))
    return None, f"revoked project key {a.id}"


def inspect_device(c: Client, a: argparse.Namespace) -> Result:
    d = c.call("GET", c.project_path(f"/devices/{a.serial}/inspect"), query={
        "software_type": a.software_type, "current_version": a.current_version,
        "hardware_version": a.hardware_version})
    return d, format_inspect(d)


def add_cohorts(commands: Commands) -> None:
    s = commands.group("cohorts", "list, create and configure cohorts")
    s.add("list", cohorts_list)
    x = s.add("create", cohorts_create)
    x.add_argument("slug")
    x.add_argument("--name")
    x = s.add("set", cohorts_set)
    x.add_argument("slug")
    x.add_argument("--name")
    x.add_argument("--version-checking", metavar="on|off")
    x.add_argument("--protected", metavar="on|off")
    x.add_argument("--requires-approval", metavar="on|off")
    x.add_argument("--ddi-polling-interval", type=int, metavar="SECONDS")
    x.add_argument("--ddi-update-type", choices=["attempt", "forced"])


def add_devices(commands: Commands) -> None:
    s = commands.group("devices", "list, add, move, stage and pin devices")
    x = s.add("list", devices_list)
    x.add_argument("--cohort")
    x.add_argument("--limit", type=int, default=100)
    for name, handler in (("get", devices_get), ("history", devices_history)):
        s.add(name, handler).add_argument("serial")
    x = s.add("clear-override", devices_clear_override)
    x.add_argument("serial")
    preview.add_flags(x)
    x = s.add("add", devices_add)
    x.add_argument("serial")
    x.add_argument("--hardware-version", required=True)
    x.add_argument("--cohort")
    x = s.add("move", devices_move)
    x.add_argument("serial")
    x.add_argument("cohort")
    preview.add_flags(x)
    x = s.add("stage", devices_stage, help="stage (or --unstage) named devices or a filtered set of a cohort")
    x.add_argument("cohort")
    x.add_argument("--serial", action="append", help="repeatable; otherwise the filters below apply")
    x.add_argument("--limit", type=int)
    x.add_argument("--current-version")
    x.add_argument("--software-type")
    x.add_argument("--hardware-version")
    x.add_argument("--order", choices=["last_seen", "random"])
    x.add_argument("--unstage", action="store_true")
    preview.add_flags(x)
    x = s.add("override", devices_override, help="pin a device to a release")
    x.add_argument("serial")
    x.add_argument("release")
    x.add_argument("--software-type")
    preview.add_flags(x)


def add_keys(commands: Commands) -> None:
    s = commands.group("keys", "project keys (device credentials)")
    s.add("list", keys_list)
    x = s.add("create", keys_create)
    x.add_argument("--name")
    x.add_argument("--cohort-override", help="cohort every device using this key is served from")
    s.add("revoke", keys_revoke).add_argument("id", type=int)


def add_inspect(commands: Commands) -> None:
    x = commands.add("inspect", "what a device gets next on each protocol, and why", inspect_device)
    x.add_argument("serial")
    x.add_argument("--software-type")
    x.add_argument("--current-version")
    x.add_argument("--hardware-version")
