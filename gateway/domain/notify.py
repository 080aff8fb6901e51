"""The NOTIFY vocabulary: what a committed write tells every gateway process to reload.

Every writer builds its messages here and the mirror parses them here, so the wire format is
written once. A message is `<version>/<kind>[:<args>]`, e.g. `1/device:12:SN-1`. During a
rolling upgrade processes of two releases share the channel: a message of a newer version, or
of a kind this process does not know, parses to None and makes the process reload everything
(never crash, never ignore it). Messages without a version are what releases before the
versioned format sent; they are still understood.

Kinds:
- `keys`: the project keys of every project
- `project:<project>`: a project's settings, cohorts, releases and resolution tables
- `devices:<project>`: every deviating device of a project
- `device:<project>:<serial>`: one device (and its cached DDI state)
- `cohort-devices:<project>:<cohort>`: the deviating devices of one cohort (staging)
- `ddi:<project>:<serial>:<origin>`: one device's DDI state, sent by process `origin`
"""
from __future__ import annotations

from dataclasses import dataclass

VERSION = 1
KINDS = ("keys", "project", "devices", "device", "cohort-devices", "ddi")
_ARITY = {"keys": 0, "project": 1, "devices": 1, "device": 2, "cohort-devices": 2, "ddi": 3}


@dataclass(frozen=True, slots=True)
class Message:
    """One parsed message; `project` is None only for `keys`."""
    kind: str
    project: int | None = None
    serial: str | None = None
    cohort: int | None = None
    origin: str | None = None


def _build(kind: str, *args) -> str:
    return f"{VERSION}/{kind}" + "".join(f":{a}" for a in args)


def keys() -> str:
    return _build("keys")


def project(project_id: int) -> str:
    return _build("project", project_id)


def devices(project_id: int) -> str:
    return _build("devices", project_id)


def device(project_id: int, serial: str) -> str:
    return _build("device", project_id, serial)


def cohort_devices(project_id: int, cohort_id: int) -> str:
    return _build("cohort-devices", project_id, cohort_id)


def ddi(project_id: int, serial: str, origin: str) -> str:
    return _build("ddi", project_id, serial, origin)


def parse(payload: str) -> Message | None:
    """The message, or None when this process does not understand it (a newer version, an
    unknown kind, malformed arguments): the caller then reloads everything."""
    version, sep, body = payload.partition("/")
    if not sep:
        body = payload  # before versioned messages
    elif not (version.isascii() and version.isdigit()) or int(version) > VERSION:
        return None
    kind, _, rest = body.partition(":")
    if kind not in KINDS:
        return None
    args = rest.split(":") if rest else []
    if kind == "ddi" and len(args) == 2:
        args.append("")  # an origin is optional
    if len(args) != _ARITY[kind] or (args and not (args[0].isascii() and args[0].isdigit())):
        return None
    if kind == "keys":
        return Message(kind)
    pid = int(args[0])
    if kind in ("device", "ddi"):
        return Message(kind, pid, serial=args[1], origin=args[2] if kind == "ddi" else None)
    if kind == "cohort-devices":
        if not (args[1].isascii() and args[1].isdigit()):
            return None
        return Message(kind, pid, cohort=int(args[1]))
    return Message(kind, pid)
