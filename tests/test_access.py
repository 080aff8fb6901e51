"""The protected-cohort rule (domain.access), table-driven: role x flag x cohort settings."""
from __future__ import annotations

import pytest

from gateway.domain.access import CohortRules, Verdict, protected_change, role_at_least

OPEN = CohortRules("open", protected=False, requires_approval=False)
PROT = CohortRules("prod", protected=True, requires_approval=False)
GATED = CohortRules("gated", protected=False, requires_approval=True)
BOTH = CohortRules("fleet", protected=True, requires_approval=True)

A, R, D = Verdict.ALLOW, Verdict.APPROVAL, Verdict.DENY


@pytest.mark.parametrize("role,flag,cohorts,approved,verdict,cohort", [
    # nothing protected: anyone who may write at all
    ("editor", False, [OPEN], False, A, None),
    ("viewer", False, [], False, A, None),
    # protected: the manager role or the flag
    ("editor", False, [PROT], False, D, "prod"),
    ("editor", True, [PROT], False, A, None),
    ("manager", False, [PROT], False, A, None),
    ("viewer", True, [PROT], False, A, None),   # the flag is the permission; the role check is separate
    # approval: a request, whoever asks, unless carrying out an approved one
    ("editor", False, [GATED], False, R, "gated"),
    ("manager", False, [GATED], False, R, "gated"),
    ("manager", False, [GATED], True, A, None),
    ("manager", False, [BOTH], False, R, "fleet"),
    ("editor", True, [BOTH], False, R, "fleet"),
    ("editor", False, [BOTH], False, D, "fleet"),
    ("editor", False, [BOTH], True, D, "fleet"),   # approving needs the permission too
    # a change touching two cohorts (a move): the strictest decides
    ("editor", False, [OPEN, PROT], False, D, "prod"),
    ("manager", False, [PROT, GATED], False, R, "gated"),
    ("editor", False, [GATED, PROT], False, D, "prod"),  # refused before any request is filed
])
def test_protected_change(role, flag, cohorts, approved, verdict, cohort):
    d = protected_change(role, flag, cohorts, approved=approved)
    assert (d.verdict, d.cohort) == (verdict, cohort)
    if verdict is D:
        assert repr(cohort) in d.message and "protected" in d.message


@pytest.mark.parametrize("role,needed,ok", [
    ("viewer", "viewer", True), ("viewer", "editor", False), ("editor", "editor", True),
    ("editor", "manager", False), ("manager", "editor", True), ("manager", "manager", True),
])
def test_role_order(role, needed, ok):
    assert role_at_least(role, needed) is ok
