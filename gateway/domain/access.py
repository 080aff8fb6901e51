"""Who may change what a device of a protected cohort gets: one rule for every write path.

A cohort is *protected* when its devices must not be changed casually (production, a
customer's fleet). Anything that changes what one of its devices is offered — activating or
pulling a release, staging, a release override, moving a device in or out, a key that polls as
the cohort, retrying a failed install, editing or deleting a release it can reach, the cohort's
own answer-shaping settings — needs the permission activating there needs: the manager role, or
a token flagged `can_activate_protected`. A cohort that *requires approval* additionally takes
such a change only as a request that a different identity approves.

This module decides; the service layer enforces (raises, or files the request).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from gateway.domain.errors import Forbidden

ROLES = {"viewer": 0, "editor": 1, "manager": 2}


class Verdict(Enum):
    """The outcome of the rule for one change."""
    ALLOW = "allow"          # apply now
    APPROVAL = "approval"    # file a request; a different identity must approve it
    DENY = "deny"            # 403


@dataclass(frozen=True, slots=True)
class CohortRules:
    """The two settings of a cohort the rule reads."""
    slug: str
    protected: bool
    requires_approval: bool


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    message: str = ""
    cohort: str | None = None   # the cohort that denies, or the first that needs approval


def role_at_least(role: str, needed: str) -> bool:
    """True when `role` ranks at or above `needed` (viewer < editor < manager)."""
    return ROLES[role] >= ROLES[needed]


def may_change_protected(role: str, can_activate_protected: bool) -> bool:
    """The permission activating in a protected cohort needs."""
    return role == "manager" or can_activate_protected


def protected_change(role: str, can_activate_protected: bool, cohorts: Iterable[CohortRules], *,
                     approved: bool = False) -> Decision:
    """The rule for a change that alters what devices of `cohorts` get.

    `approved` is True when the change is carried out because a request was approved: the
    approver still needs the permission, but no further approval. An editor (or a token without
    the flag) is denied in any protected cohort; a cohort that requires approval turns an
    allowed change into a request, whether or not it is also protected.
    """
    cohorts = list(cohorts)
    for c in cohorts:
        if c.protected and not may_change_protected(role, can_activate_protected):
            return Decision(Verdict.DENY, f"cohort {c.slug!r} is protected: changing what its devices get needs "
                                          "the manager role or a token allowed to activate protected cohorts",
                            c.slug)
    if not approved:
        for c in cohorts:
            if c.requires_approval:
                return Decision(Verdict.APPROVAL, f"cohort {c.slug!r} requires approval", c.slug)
    return Decision(Verdict.ALLOW)


@dataclass(frozen=True, slots=True)
class Identity:
    actor: str            # what the audit log shows: token name or user email (never a secret)
    org_id: int
    org_slug: str
    role: str
    can_activate_protected: bool

    def require(self, role: str) -> None:
        if not role_at_least(self.role, role):
            raise Forbidden(f"this action needs the {role} role; you are {self.role}")
