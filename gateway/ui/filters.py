"""The Jinja2 filters of the dashboard's templates: dates, sizes, JSON, shares, URL parts, and
what the reason codes of resolution and DDI planning mean for people."""
from __future__ import annotations

from urllib.parse import quote

import orjson


def _when(iso: str | None) -> str:
    return "" if not iso else iso[:19].replace("T", " ")


def _size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _json(v) -> str:
    return "" if v is None else orjson.dumps(v, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def _pct(share: float) -> str:
    return f"{share * 100:.0f} %" if share else "–"


# what each reason code of resolution / DDI planning means, for people
REASONS = {
    "delta": "a delta release applies from the current version",
    "must_pass_through": "a must-pass-through release lies between the current version and the target",
    "full": "the newest full release of the cohort is newer than the current version",
    "override": "this device is pinned to a release",
    "latest": "the device already runs the newest release",
    "no_release_for_hardware": "no active release has a payload for this hardware version",
    "no_active_release": "nothing is active for this software type in the cohort",
    "not_staged": "a staged rollout applies, but this device is not in the staged share",
    "cohort_settings": "version checking is off: the cohort's target is offered, even as a downgrade",
    "in_progress": "an action is open and the device has not finished it",
    "canceled_by_server": "the open action is no longer wanted and is cancelled",
    "canceling": "a cancellation is waiting for the device",
    "failed_previously": "the release failed on this device; retry it to offer it again",
    "no_hardware_version": "the device reported no hardware version and the project has no default",
    "no_software_type": "the device reported no software type and the project has no default",
}

FILTERS = {"why": lambda code: REASONS.get(code, ""), "when": _when, "size": _size, "json": _json, "pct": _pct,
           "q": lambda s: quote(str(s), safe="")}
