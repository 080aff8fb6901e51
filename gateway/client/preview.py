"""`--dry-run` and `--preview-token` on every change command: print what the change would do (and change
nothing), or apply it only if it still does exactly what that preview said (services/preview.py)."""
from __future__ import annotations

import argparse

from gateway.client.http import CliError
from gateway.client.output import table


def add_flags(x: argparse.ArgumentParser) -> None:
    x.add_argument("--dry-run", action="store_true", help="show what the change would do; change nothing")
    x.add_argument("--preview-token", metavar="TOKEN",
                   help="apply only if it still does exactly what the dry run that gave this token showed")


def body(a: argparse.Namespace) -> dict:
    """The fields a change request carries for the flags."""
    if a.dry_run and a.preview_token:
        raise CliError("--dry-run and --preview-token exclude each other: preview first, then apply with the token")
    if a.dry_run:
        return {"dry_run": True}
    return {"preview_token": a.preview_token} if a.preview_token else {}


def query(a: argparse.Namespace) -> dict:
    """The same, as query parameters (DELETE requests)."""
    return {k: ("true" if v is True else v) for k, v in body(a).items()}


def shown(d, message: str) -> str:
    """The preview when the answer is one, else the command's own message."""
    return format_preview(d) if isinstance(d, dict) and d.get("dry_run") else message


def format_preview(d: dict) -> str:
    """Per cohort, software type, hardware and current version whose answers change: the next
    release of its devices before and after, and what it would cost."""
    head = (f"dry run: {d['devices_moving']:,} device(s) would move to a new release, "
            f"{d['bytes']:,} bytes to download" + (" (the change needs approval)" if d["would_need_approval"] else ""))
    out = [head]
    if d["changes"]:
        rows = [[c["cohort"], c["software_type"], c["hardware_version"] or "-", c["current_version"] or "(none)",
                 _counts(c["before"]), _counts(c["after"])] for c in d["changes"]]
        out += ["", table(rows, ["cohort", "software type", "hardware", "current", "next before", "next after"])]
    else:
        out.append("no device would get a different answer")
    if d["ddi_cancels"]:
        out.append(f"DDI actions it would cancel: {', '.join(str(x['action_id']) for x in d['ddi_cancels'])}")
    out += ["", f"apply exactly this: the same command with --preview-token {d['preview_token']}"]
    return "\n".join(out)


def _counts(c: dict) -> str:
    return ", ".join(f"{v} x{n}" for v, n in c.items())
