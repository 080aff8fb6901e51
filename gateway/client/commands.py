"""What every management subcommand shares: the connection flags, a parser that carries its
function (argparse `set_defaults(func=...)`), and `run`, which calls that function with a client
and prints what it returns.

A subcommand's function takes the client and the parsed arguments and returns the `data` to print
with `--json` and the text to print otherwise.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from typing import Any, Callable

from gateway.client.http import Client, CliError, Pending

Handler = Callable[[Client, argparse.Namespace], tuple[Any, str]]


def run(handler: Handler, args: argparse.Namespace) -> int:
    """Call a subcommand's function and print its result (or the approval request the server filed
    instead); the exit code."""
    c = Client(args.url, args.token, args.org, args.project)
    try:
        result, text = handler(c, args)
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


def connection_flags(suppress: bool) -> argparse.ArgumentParser:
    """--url, --token, --org, --project and --json, defaulting to the OTA_* variables."""
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


def _wire(p: argparse.ArgumentParser, handler: Handler) -> argparse.ArgumentParser:
    p.set_defaults(func=functools.partial(run, handler))
    return p


class Commands:
    """Adds management subcommands to the `ota-gateway` parser, each with the connection flags."""

    def __init__(self, sub: argparse._SubParsersAction):
        self._sub = sub
        self._outer, self._inner = connection_flags(False), connection_flags(True)

    def add(self, name: str, help_: str, handler: Handler) -> argparse.ArgumentParser:
        """A subcommand that does one thing (`ota-gateway matrix`)."""
        return _wire(self._sub.add_parser(name, help=help_, parents=[self._outer]), handler)

    def group(self, name: str, help_: str) -> Group:
        """A subcommand with subcommands of its own (`ota-gateway cohorts list`)."""
        return Group(self._sub.add_parser(name, help=help_, parents=[self._outer]), self._inner)


class Group:
    """The subcommands of a group; they take the connection flags again (after the subcommand)."""

    def __init__(self, parser: argparse.ArgumentParser, flags: argparse.ArgumentParser):
        self._sub = parser.add_subparsers(dest="sub", required=True)
        self._flags = flags

    def add(self, name: str, handler: Handler, **kw) -> argparse.ArgumentParser:
        return _wire(self._sub.add_parser(name, parents=[self._flags], **kw), handler)
