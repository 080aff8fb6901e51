"""Pure release resolution: which release (if any) a polling device gets.

Tables are precomputed per (cohort, software type, hardware version, staged)
so a poll is a dict lookup plus at most one bisect.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.domain.versions import version_key

__all__ = [
    "Release", "Activation", "Decision", "DecisionTable",
    "build_table", "build_tables", "active_software_types", "resolve",
    "REASON_DELTA", "REASON_MPT", "REASON_FULL", "REASON_OVERRIDE", "REASON_LATEST",
    "REASON_NO_HARDWARE", "REASON_NO_RELEASE", "REASON_NOT_STAGED", "REASON_COHORT_TARGET",
]

REASON_DELTA = "delta"
REASON_MPT = "must_pass_through"
REASON_FULL = "full"
REASON_OVERRIDE = "override"
REASON_LATEST = "latest"
REASON_NO_HARDWARE = "no_release_for_hardware"
REASON_NO_RELEASE = "no_active_release"
REASON_NOT_STAGED = "not_staged"
REASON_COHORT_TARGET = "cohort_settings"

_MEMO_LIMIT = 4096
# Longer strings are still answered, just not memoized, to bound memory.
_MEMO_MAX_VERSION_LEN = 128


@dataclass(frozen=True, slots=True)
class Release:
    id: int
    software_type: str
    version: str
    hardware_versions: frozenset[str]
    from_version: str | None = None
    must_pass_through: bool = False

    @property
    def is_delta(self) -> bool:
        """True for a delta release (it only applies on top of ``from_version``)."""
        return self.from_version is not None


@dataclass(frozen=True, slots=True)
class Activation:
    release_id: int
    cohort_id: int
    staged: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    release_id: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class DecisionTable:
    """Immutable answer for one (cohort, software type, hardware, staged) key.

    The constructor normalises its input (drops non-upgrading deltas, sorts
    MPTs), so a table built from JSON behaves exactly like the original.
    """

    deltas: Mapping[str, tuple[int, str]]
    mpts: tuple[tuple[str, int], ...]
    top_full: tuple[str, int] | None
    version_checking: bool = True
    _mpt_keys: tuple = field(init=False, repr=False, compare=False)
    _top_key: tuple | None = field(init=False, repr=False, compare=False)
    _memo: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Enforced here rather than only in build_table so that tables loaded
        # from JSON cannot offer a downgrading delta either.
        deltas = {
            frm: (int(rid), to)
            for frm, (rid, to) in self.deltas.items()
            if version_key(to) > version_key(frm)
        }
        mpts = tuple(sorted(((v, int(rid)) for v, rid in self.mpts),
                            key=lambda m: (version_key(m[0]), m[1])))
        top = None if self.top_full is None else (self.top_full[0], int(self.top_full[1]))
        setattr_ = object.__setattr__
        setattr_(self, "deltas", deltas)
        setattr_(self, "mpts", mpts)
        setattr_(self, "top_full", top)
        setattr_(self, "version_checking", bool(self.version_checking))
        setattr_(self, "_mpt_keys", tuple(version_key(v) for v, _ in mpts))
        setattr_(self, "_top_key", None if top is None else version_key(top[0]))
        setattr_(self, "_memo", {})

    def decide(self, current_version: str | None) -> Decision:
        """Return what a device on ``current_version`` should be offered."""
        memo = self._memo
        decision = memo.get(current_version)
        if decision is None:
            decision = self._decide(current_version)
            if current_version is None or len(current_version) <= _MEMO_MAX_VERSION_LEN:
                if len(memo) >= _MEMO_LIMIT:
                    memo.clear()
                memo[current_version] = decision
        return decision

    def _decide(self, current: str | None) -> Decision:
        top = self.top_full
        if not current:
            return Decision(top[1], REASON_FULL) if top else Decision(None, REASON_LATEST)

        delta = self.deltas.get(current)
        if delta is not None:
            return Decision(delta[0], REASON_DELTA)

        current_key = version_key(current)
        i = bisect.bisect_right(self._mpt_keys, current_key)
        if i < len(self.mpts):
            return Decision(self.mpts[i][1], REASON_MPT)

        if top is None:
            return Decision(None, REASON_LATEST)
        if self.version_checking:
            if self._top_key > current_key:
                return Decision(top[1], REASON_FULL)
        elif self._top_key != current_key:
            return Decision(top[1], REASON_COHORT_TARGET)
        return Decision(None, REASON_LATEST)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict; inverse of :meth:`from_json`."""
        return {
            "deltas": {frm: [rid, to] for frm, (rid, to) in self.deltas.items()},
            "mpts": [[v, rid] for v, rid in self.mpts],
            "top_full": None if self.top_full is None else list(self.top_full),
            "version_checking": self.version_checking,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DecisionTable:
        """Rebuild a table (including its lookup indexes) from :meth:`to_json` output."""
        top = d.get("top_full")
        return cls(
            deltas={frm: (rid, to) for frm, (rid, to) in d.get("deltas", {}).items()},
            mpts=tuple((v, rid) for v, rid in d.get("mpts", [])),
            top_full=None if top is None else (top[0], top[1]),
            version_checking=d.get("version_checking", True),
        )


def _newer(version: str, rid: int, than: tuple[str, int] | None) -> bool:
    # Release id breaks ties between equal versions so builds are deterministic.
    return than is None or (version_key(version), rid) > (version_key(than[0]), than[1])


def build_table(releases: Iterable[Release], version_checking: bool = True) -> DecisionTable:
    """Build the table for releases already known to apply to one key."""
    deltas: dict[str, tuple[int, str]] = {}
    mpts: dict[str, int] = {}
    top: tuple[str, int] | None = None
    for r in releases:
        if r.is_delta:
            best = deltas.get(r.from_version)
            if best is None or _newer(r.version, r.id, (best[1], best[0])):
                deltas[r.from_version] = (r.id, r.version)
            continue
        if r.must_pass_through and r.id > mpts.get(r.version, -1):
            mpts[r.version] = r.id
        if _newer(r.version, r.id, top):
            top = (r.version, r.id)
    return DecisionTable(deltas, tuple(mpts.items()), top, version_checking)


def build_tables(
    releases: Mapping[int, Release],
    activations: Iterable[Activation],
    cohort_version_checking: Mapping[int, bool],
) -> dict[tuple[int, str, str, bool], DecisionTable]:
    """Build every table, keyed by ``(cohort_id, software_type, hardware_version, staged)``.

    Staged devices see normal and staged activations, unstaged devices only
    normal ones. Both staged flags are emitted for every combination that has
    any activation, so a missing key always means "no payload for this hw".
    Activations referring to unknown releases are ignored.
    """
    groups: dict[tuple[int, str, str, bool], dict[int, Release]] = defaultdict(dict)
    for a in activations:
        r = releases.get(a.release_id)
        if r is None:
            continue
        for hw in r.hardware_versions:
            groups[(a.cohort_id, r.software_type, hw, True)][r.id] = r
            unstaged = groups[(a.cohort_id, r.software_type, hw, False)]
            if not a.staged:
                unstaged[r.id] = r
    return {
        key: build_table(rels.values(), cohort_version_checking.get(key[0], True))
        for key, rels in groups.items()
    }


def active_software_types(tables: Iterable[tuple[int, str, str, bool]]) -> set[tuple[int, str]]:
    """Return the ``(cohort_id, software_type)`` pairs that have any activation.

    Accepts the mapping returned by :func:`build_tables` (or its keys); used to
    tell ``no_release_for_hardware`` from ``no_active_release``.
    """
    return {(cohort, sw) for cohort, sw, _hw, _staged in tables}


def resolve(
    current_version: str | None,
    hardware_version: str,
    table: DecisionTable | None,
    *,
    has_active_release: bool,
    override: Release | None = None,
    staged_table: DecisionTable | None = None,
) -> Decision:
    """Decide what to offer one device.

    ``override`` (a device-specific release) wins over everything, including
    MPTs and the no-downgrade rule. ``staged_table`` should be given for
    unstaged devices only, to report ``not_staged`` instead of ``latest``.
    """
    if override is not None:
        if hardware_version not in override.hardware_versions:
            return Decision(None, REASON_NO_HARDWARE)
        if override.version == current_version:
            return Decision(None, REASON_LATEST)
        return Decision(override.id, REASON_OVERRIDE)

    if table is None:
        return Decision(None, REASON_NO_HARDWARE if has_active_release else REASON_NO_RELEASE)

    decision = table.decide(current_version)
    if (
        decision.release_id is None
        and staged_table is not None
        and staged_table.decide(current_version).release_id is not None
    ):
        return Decision(None, REASON_NOT_STAGED)
    return decision


def explain(table: DecisionTable | None, current_version: str | None) -> dict[str, Any]:
    """The candidates each rule of `DecisionTable.decide` looked at, for "inspect device"."""
    if table is None:
        return {"table": None}
    current_key = version_key(current_version) if current_version else None
    delta = table.deltas.get(current_version) if current_version else None
    mpts = [{"version": v, "release_id": rid, "applies": current_key is not None and version_key(v) > current_key}
            for v, rid in table.mpts]
    top = table.top_full
    return {
        "delta": None if delta is None else {"from": current_version, "to": delta[1], "release_id": delta[0]},
        "deltas_available_from": sorted(table.deltas),
        "must_pass_through": mpts,
        "full": None if top is None else {
            "version": top[0], "release_id": top[1],
            "newer_than_current": current_key is None or version_key(top[0]) > current_key},
        "version_checking": table.version_checking,
    }
