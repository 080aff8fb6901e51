"""Who asked for a change and who made one: `requests` (activation requests awaiting approval) and
`audit` (the audit log). One function per subcommand, then the parsers that wire them."""
from __future__ import annotations

import argparse
from typing import Any

from gateway.client.commands import Commands
from gateway.client.http import Client
from gateway.client.output import request_what, table

Result = tuple[Any, str]


def requests_list(c: Client, a: argparse.Namespace) -> Result:
    d = c.call("GET", c.project_path("/activation-requests"), query={"status": a.status})
    return d, table([[x["id"], x["action"], x["cohort"], request_what(x), x["status"], x["requested_by"]]
                     for x in d], ["id", "action", "cohort", "change", "status", "requested_by"])


def _decide(c: Client, a: argparse.Namespace, verdict: str) -> Result:
    d = c.call("POST", c.project_path(f"/activation-requests/{a.id}/{verdict}"))
    return d, f"request {a.id} {d['status']}"


def requests_approve(c: Client, a: argparse.Namespace) -> Result:
    return _decide(c, a, "approve")


def requests_reject(c: Client, a: argparse.Namespace) -> Result:
    return _decide(c, a, "reject")


def audit_log(c: Client, a: argparse.Namespace) -> Result:
    d = c.call("GET", c.project_path("/audit-log"), query={"limit": a.limit, "action": a.action, "actor": a.actor})
    return d, table([[x["id"], x["date"], x["actor"], x["action"], x["object"]] for x in d],
                    ["id", "date", "actor", "action", "object"])


def add_requests(commands: Commands) -> None:
    s = commands.group("requests", "activation requests awaiting approval")
    s.add("list", requests_list).add_argument("--status", default="pending")
    s.add("approve", requests_approve).add_argument("id", type=int)
    s.add("reject", requests_reject).add_argument("id", type=int)


def add_audit(commands: Commands) -> None:
    x = commands.add("audit", "the audit log", audit_log)
    x.add_argument("--limit", type=int, default=50)
    x.add_argument("--action")
    x.add_argument("--actor")
