"""hawkBit DDI actions as pure rules: a device's state, what its next poll is offered (`plan`,
a typed `Offer`), how feedback is read and which action transition it causes.

The project is read through the few attributes `plan` needs (the mirror's ProjectView has
them); nothing here does I/O.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gateway.domain.errors import BadRequest


@dataclass(frozen=True, slots=True)
class ActionView:
    id: int
    release_id: int | None
    payload_id: int | None
    software_type: str
    version: str
    status: str                 # open | canceling
    cancel_rejected: bool
    retrieved: bool


@dataclass(frozen=True, slots=True)
class DeviceState:
    device_id: int | None       # None: not registered yet
    hardware_version: str | None
    software_type: str | None
    versions: dict[str, str]
    token_hash: str | None
    config_requested: bool
    actions: dict[str, ActionView]        # open actions by software type
    installed: dict[str, tuple[int, int | None]]  # software type -> (last succeeded action, payload)
    blocked: frozenset[int]               # releases that failed here and were not retried
    # the last base-poll answer rendered from this state, with what else it depended on (at most one
    # ddi._Rendered; a list so that the frozen state can hold it)
    rendered: list = field(default_factory=list, compare=False, repr=False)

    def payload_allowed(self, payload_id: int) -> bool:
        """A device may download what it was offered or last installed."""
        return any(a.payload_id == payload_id for a in self.actions.values()) or \
            any(p == payload_id for _, p in self.installed.values())


EXECUTIONS = ("closed", "proceeding", "canceled", "scheduled", "rejected", "resumed", "downloaded", "download")
FINISHED = ("success", "failure", "none")
HAWKBIT_STATUS = {"open": "RUNNING", "canceling": "CANCELING", "succeeded": "FINISHED", "failed": "ERROR",
                  "canceled": "CANCELED"}
_MAX_DETAILS = 100
_MAX_DETAIL_CHARS = 1024


@dataclass(slots=True)
class Caller:
    """An authenticated device: its project, serial and cached state."""
    project: Any          # the mirror's ProjectView
    serial: str
    cohort_override: int | None
    state: DeviceState

    @property
    def key(self) -> tuple[int, str]:
        return (self.project.id, self.serial)


def effective_identity(project, state: DeviceState) -> tuple[str | None, str | None]:
    """Hardware version (reported or provisioned, else the project's DDI default) and software type."""
    return (state.hardware_version or project.ddi_hardware_version,
            state.software_type or project.ddi_software_type)


@dataclass(frozen=True, slots=True)
class Offer:
    """What a poll shows a device, and why.

    `what` is `deploymentBase` or `cancelAction` (of `action`, which exists), `cancel` (the open
    `action` is no longer wanted: mark it canceling), `create` (a new action for `release` and
    `payload`), or None (nothing to offer). `reason` says why (a resolution reason, or one of
    `in_progress`, `canceling`, `canceled_by_server`, `failed_previously`, `no_hardware_version`,
    `no_software_type`, `no_release_for_hardware`)."""
    what: str | None
    reason: str
    action: ActionView | None = None
    release: Any = None   # the mirror's ReleaseView, for `create`
    payload: Any = None   # the mirror's PayloadView, for `create`

    @property
    def shows(self) -> bool:
        """True when the answer links an existing action."""
        return self.what in ("deploymentBase", "cancelAction")


def plan(caller: Caller) -> Offer:
    """What a poll should show (pure: the caller does the writes `cancel` and `create` need)."""
    project, state = caller.project, caller.state
    hw, sw = effective_identity(project, state)
    if not hw:
        return Offer(None, "no_hardware_version")
    if not sw:
        return Offer(None, "no_software_type")
    current = state.versions.get(sw)
    decision, dev = project.decide(caller.serial, hw, sw, current, caller.cohort_override)
    action = state.actions.get(sw)
    if action is not None:
        if action.status == "canceling":
            return Offer("cancelAction", "canceling", action)
        # keep offering it until the device closes it, also once it reports the new version:
        # SWUpdate sends its final report after a restart, to the action the poll still shows
        if action.release_id in project.releases and (
                action.cancel_rejected or action.release_id == decision.release_id or action.version == current):
            return Offer("deploymentBase", decision.reason if action.release_id == decision.release_id
                         else "in_progress", action)
        return Offer("cancel", "canceled_by_server", action)
    if decision.release_id is None:
        return Offer(None, decision.reason)
    if decision.release_id in state.blocked:
        return Offer(None, "failed_previously")
    rel = project.releases.get(decision.release_id)
    pl = rel.payloads.get(dev.hardware_version if dev and dev.hardware_version else hw) if rel else None
    if pl is None:
        return Offer(None, "no_release_for_hardware")
    return Offer("create", decision.reason, release=rel, payload=pl)


@dataclass(frozen=True, slots=True)
class Feedback:
    execution: str
    finished: str
    code: int | None
    progress: dict | None
    details: list[str]


def _text(v) -> str:
    s = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    return s.replace("\x00", "")[:_MAX_DETAIL_CHARS]  # PostgreSQL text cannot hold NUL


def parse_feedback(body: Any) -> Feedback:
    """Validate what hawkBit requires (status.execution, status.result.finished) of a parsed
    feedback body and take the rest as it comes: free text is capped, never a reason to refuse a
    final report."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    status = body.get("status")
    if not isinstance(status, dict):
        raise BadRequest("status is required: an object with execution and result")
    execution = status.get("execution")
    if not isinstance(execution, str) or execution not in EXECUTIONS:
        raise BadRequest(f"status.execution must be one of {', '.join(EXECUTIONS)}")
    result = status.get("result")
    if not isinstance(result, dict):
        raise BadRequest("status.result is required: an object with finished")
    finished = result.get("finished")
    if not isinstance(finished, str) or finished not in FINISHED:
        raise BadRequest(f"status.result.finished must be one of {', '.join(FINISHED)}")
    code = status.get("code")
    if not isinstance(code, int) or isinstance(code, bool) or not -2**31 <= code < 2**31:
        code = None
    progress = result.get("progress")
    progress = {k: progress[k] for k in ("cnt", "of") if isinstance(progress.get(k), int)} \
        if isinstance(progress, dict) else None
    details = status.get("details")
    details = [details] if isinstance(details, str) else details if isinstance(details, list) else []
    return Feedback(execution, finished, code, progress or None, [_text(d) for d in details[:_MAX_DETAILS]])


def transition(kind: str, fb: Feedback) -> tuple[str | None, bool]:
    """(new action status or None, cancel rejected) for feedback on a `deployment` or a `cancel`."""
    if kind == "deployment":
        if fb.execution == "closed":
            return ("failed" if fb.finished == "failure" else "succeeded"), False
        return ("canceled" if fb.execution == "canceled" else None), False
    if fb.execution == "closed":
        return ("failed" if fb.finished == "failure" else "canceled"), False
    if fb.execution == "rejected":
        return "open", True
    return None, False
