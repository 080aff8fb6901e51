import dataclasses
import json

import pytest

from gateway.domain.resolution import REASON_COHORT_TARGET, REASON_DELTA, REASON_FULL, REASON_LATEST, REASON_MPT, REASON_NO_HARDWARE, REASON_NO_RELEASE, REASON_NOT_STAGED, REASON_OVERRIDE, Activation, Decision, DecisionTable, Release, active_software_types, build_table, build_tables, resolve

EVT, DVT, PVT = "evt", "dvt", "pvt"


def full(rid, version, *, hw=(EVT,), sw="main", mpt=False):
    return Release(rid, sw, version, frozenset(hw), must_pass_through=mpt)


def delta(rid, frm, to, *, hw=(EVT,), sw="main"):
    return Release(rid, sw, to, frozenset(hw), from_version=frm)


# --- build_table + decide -------------------------------------------------

BASIC = [full(1, "1.0.0"), full(2, "2.0.0"), delta(3, "2.0.0", "2.1.0")]
ONE_MPT = [full(1, "1.0.0"), full(2, "1.5.0", mpt=True), full(3, "2.0.0")]
TWO_MPTS = [full(1, "1.0.0"), full(2, "1.5.0", mpt=True), full(3, "1.8.0", mpt=True),
            full(4, "2.0.0")]
MPT_IS_TOP = [full(1, "1.0.0"), full(2, "2.0.0", mpt=True)]
DELTA_OVER_MPT = [full(1, "1.0.0"), full(2, "1.5.0", mpt=True), full(3, "2.0.0"),
                  delta(4, "1.0.0", "2.0.0")]
BAD_DELTAS = [full(1, "1.0.0"), full(2, "2.0.0"), delta(3, "2.0.0", "1.0.0"),
              delta(4, "3.0.0", "3.0.0"), delta(5, "2.0.0", "2.0.0-rc.1")]
TWO_DELTAS_SAME_FROM = [full(1, "1.2.0"), delta(2, "1.0.0", "1.1.0"), delta(3, "1.0.0", "1.2.0")]
DELTAS_ONLY = [delta(1, "1.0.0", "1.1.0")]
NON_SEMVER = [full(1, "3.4.0.2"), full(2, "3.4.0.10"), delta(3, "3.4.0.2", "3.4.0.10")]
V_PREFIX = [full(1, "v4.4.0"), full(2, "v4.10.0")]
PLAIN = [full(1, "1.0.0"), full(2, "2.0.0")]
SAME_VERSION = [full(5, "2.0.0"), full(6, "2.0.0"), full(7, "1.0.0")]

TABLE_CASES = [
    # (catalog, version_checking, current, expected release id, expected reason)
    pytest.param(BASIC, True, "0.9.0", 2, REASON_FULL, id="basic-below-all"),
    pytest.param(BASIC, True, "1.1.0", 2, REASON_FULL, id="basic-between"),
    pytest.param(BASIC, True, "1.0.0", 2, REASON_FULL, id="basic-on-old-full"),
    pytest.param(BASIC, True, "2.0.0", 3, REASON_DELTA, id="basic-delta"),
    pytest.param(BASIC, True, "2.1.0", None, REASON_LATEST, id="basic-on-delta-target"),
    pytest.param(BASIC, True, "9.9.9", None, REASON_LATEST, id="basic-never-downgrade"),
    pytest.param(BASIC, True, None, 2, REASON_FULL, id="basic-absent-none"),
    pytest.param(BASIC, True, "", 2, REASON_FULL, id="basic-absent-empty"),
    pytest.param(BASIC, True, "v2.0.0", None, REASON_LATEST, id="delta-needs-exact-from-string"),
    pytest.param(ONE_MPT, True, "1.0.0", 2, REASON_MPT, id="mpt-from-previous"),
    pytest.param(ONE_MPT, True, "0.5.0", 2, REASON_MPT, id="mpt-from-below"),
    pytest.param(ONE_MPT, True, "1.5.0-rc.1", 2, REASON_MPT, id="mpt-from-its-prerelease"),
    pytest.param(ONE_MPT, True, "1.5.0", 3, REASON_FULL, id="mpt-passed"),
    pytest.param(ONE_MPT, True, "1.6.0", 3, REASON_FULL, id="mpt-above"),
    pytest.param(ONE_MPT, True, "2.0.0", None, REASON_LATEST, id="mpt-on-top"),
    pytest.param(ONE_MPT, True, None, 3, REASON_FULL, id="mpt-absent-current-gets-top"),
    pytest.param(TWO_MPTS, True, "1.6.0", 3, REASON_MPT, id="two-mpts-next-one"),
    pytest.param(TWO_MPTS, True, "1.0.0", 2, REASON_MPT, id="two-mpts-lowest-first"),
    pytest.param(TWO_MPTS, True, "1.8.0", 4, REASON_FULL, id="two-mpts-passed"),
    pytest.param(MPT_IS_TOP, True, "1.0.0", 2, REASON_MPT, id="mpt-top-offered-as-mpt"),
    pytest.param(MPT_IS_TOP, True, "2.0.0", None, REASON_LATEST, id="mpt-top-latest"),
    pytest.param(MPT_IS_TOP, True, None, 2, REASON_FULL, id="mpt-top-absent"),
    pytest.param(DELTA_OVER_MPT, True, "1.0.0", 4, REASON_DELTA, id="delta-bypasses-mpt"),
    pytest.param(DELTA_OVER_MPT, True, "0.9.0", 2, REASON_MPT, id="no-delta-so-mpt"),
    pytest.param(BAD_DELTAS, True, "2.0.0", None, REASON_LATEST, id="downgrading-delta-dropped"),
    pytest.param(BAD_DELTAS, True, "3.0.0", None, REASON_LATEST, id="same-version-delta-dropped"),
    pytest.param(BAD_DELTAS, False, "2.0.0", None, REASON_LATEST, id="bad-delta-dropped-vc-off"),
    pytest.param(BAD_DELTAS, False, "3.0.0", 2, REASON_COHORT_TARGET, id="bad-delta-vc-off-target"),
    pytest.param(TWO_DELTAS_SAME_FROM, True, "1.0.0", 3, REASON_DELTA, id="highest-delta-wins"),
    pytest.param(DELTAS_ONLY, True, None, None, REASON_LATEST, id="deltas-only-absent"),
    pytest.param(DELTAS_ONLY, True, "1.0.0", 1, REASON_DELTA, id="deltas-only-match"),
    pytest.param(DELTAS_ONLY, True, "0.5.0", None, REASON_LATEST, id="deltas-only-no-match"),
    pytest.param(NON_SEMVER, True, "3.4.0.1", 2, REASON_FULL, id="non-semver-full"),
    pytest.param(NON_SEMVER, True, "3.4.0.2", 3, REASON_DELTA, id="non-semver-delta"),
    pytest.param(NON_SEMVER, True, "3.4.0.10", None, REASON_LATEST, id="non-semver-latest"),
    pytest.param([full(1, "3.4.0.2"), full(2, "3.4.0.10")], True, "3.4.0.2", 2, REASON_FULL,
                 id="non-semver-numeric-not-lexical"),
    pytest.param(V_PREFIX, True, "v4.4.0", 2, REASON_FULL, id="v-prefix-natural"),
    pytest.param(V_PREFIX, True, "4.9.0", 2, REASON_FULL, id="v-prefix-vs-bare"),
    pytest.param(PLAIN, False, "9.9.9", 2, REASON_COHORT_TARGET, id="vc-off-downgrade"),
    pytest.param(PLAIN, False, "1.0.0", 2, REASON_COHORT_TARGET, id="vc-off-upgrade"),
    pytest.param(PLAIN, False, "2.0.0", None, REASON_LATEST, id="vc-off-on-target"),
    pytest.param(PLAIN, False, None, 2, REASON_FULL, id="vc-off-absent"),
    pytest.param(ONE_MPT, False, "9.9.9", 3, REASON_COHORT_TARGET, id="vc-off-mpt-not-downgrade"),
    pytest.param(SAME_VERSION, True, "1.0.0", 6, REASON_FULL, id="equal-versions-higher-id"),
    pytest.param([], True, "1.0.0", None, REASON_LATEST, id="empty-table"),
    pytest.param([], True, None, None, REASON_LATEST, id="empty-table-absent"),
]


@pytest.mark.parametrize("catalog, version_checking, current, release_id, reason", TABLE_CASES)
def test_decide(catalog, version_checking, current, release_id, reason):
    table = build_table(catalog, version_checking=version_checking)
    assert table.decide(current) == Decision(release_id, reason)
    # Second call is served from the memo and must agree.
    assert table.decide(current) == Decision(release_id, reason)


def test_build_table_shape():
    table = build_table(TWO_MPTS + [delta(9, "2.0.0", "2.1.0"), delta(10, "2.0.0", "1.0.0")])
    assert table.deltas == {"2.0.0": (9, "2.1.0")}
    assert table.mpts == (("1.5.0", 2), ("1.8.0", 3))
    assert table.top_full == ("2.0.0", 4)
    assert table.version_checking is True


def test_top_full_counts_mpt_releases():
    assert build_table(MPT_IS_TOP).top_full == ("2.0.0", 2)


# --- build_tables + resolve -------------------------------------------------

RELEASES = {r.id: r for r in [
    full(1, "1.0.0", hw=(EVT, DVT)),
    full(2, "2.0.0", hw=(EVT, DVT)),
    full(3, "3.0.0", hw=(EVT, DVT)),
    full(4, "2.5.0", hw=(EVT,)),
    full(5, "9.0.0", sw="modem"),
    full(6, "1.5.0", hw=(EVT, DVT), mpt=True),
]}
ACTIVATIONS = [
    # cohort 1: 1.0.0 and 2.0.0 live, 3.0.0 staged; plus a modem release
    Activation(1, 1), Activation(2, 1), Activation(3, 1, staged=True), Activation(5, 1),
    # cohort 2: 1.0.0 and an evt-only 2.5.0
    Activation(1, 2), Activation(4, 2),
    # cohort 3: only a staged release
    Activation(3, 3, staged=True),
    # cohort 4: version checking disabled
    Activation(1, 4), Activation(2, 4),
    # cohort 5: must-pass-through 1.5.0
    Activation(1, 5), Activation(6, 5), Activation(2, 5),
    # dangling activation of an unknown release is ignored
    Activation(99, 1),
]
VERSION_CHECKING = {1: True, 2: True, 3: True, 4: False}  # cohort 5 absent => default on
TABLES = build_tables(RELEASES, ACTIVATIONS, VERSION_CHECKING)
ACTIVE = active_software_types(TABLES)


def poll(cohort, hw, staged, current, sw="main", override=None):
    """Resolve the way the poll handler does, from the prebuilt tables."""
    return resolve(
        current,
        hw,
        TABLES.get((cohort, sw, hw, staged)),
        has_active_release=(cohort, sw) in ACTIVE,
        override=override,
        staged_table=None if staged else TABLES.get((cohort, sw, hw, True)),
    )


POLL_CASES = [
    # (cohort, hw, staged, current, software type, release id, reason)
    pytest.param(1, EVT, True, "2.0.0", "main", 3, REASON_FULL, id="staged-device-gets-staged"),
    pytest.param(1, EVT, False, "2.0.0", "main", None, REASON_NOT_STAGED, id="unstaged-not-staged"),
    pytest.param(1, EVT, False, "1.0.0", "main", 2, REASON_FULL, id="unstaged-gets-normal"),
    pytest.param(1, EVT, False, "3.0.0", "main", None, REASON_LATEST, id="unstaged-on-staged-top"),
    pytest.param(1, EVT, True, "3.0.0", "main", None, REASON_LATEST, id="staged-on-top"),
    pytest.param(1, DVT, True, "1.0.0", "main", 3, REASON_FULL, id="staged-dvt"),
    pytest.param(1, PVT, False, "1.0.0", "main", None, REASON_NO_HARDWARE, id="no-payload-for-hw"),
    pytest.param(1, EVT, False, "1.0.0", "modem", 5, REASON_FULL, id="other-sw-type"),
    pytest.param(1, DVT, False, "1.0.0", "modem", None, REASON_NO_HARDWARE, id="other-sw-no-hw"),
    pytest.param(1, EVT, False, "1.0.0", "bootloader", None, REASON_NO_RELEASE, id="sw-not-active"),
    pytest.param(2, EVT, False, "2.0.0", "main", 4, REASON_FULL, id="cohort2-own-release"),
    pytest.param(2, EVT, True, "2.5.0", "main", None, REASON_LATEST, id="cohort1-staged-not-here"),
    pytest.param(2, DVT, False, "1.0.0", "main", None, REASON_LATEST, id="hw-filter-in-cohort"),
    pytest.param(2, EVT, False, "1.0.0", "modem", None, REASON_NO_RELEASE, id="other-cohort-sw"),
    pytest.param(3, EVT, False, "1.0.0", "main", None, REASON_NOT_STAGED, id="staged-only-cohort"),
    pytest.param(3, EVT, False, None, "main", None, REASON_NOT_STAGED, id="staged-only-absent"),
    pytest.param(3, EVT, True, "1.0.0", "main", 3, REASON_FULL, id="staged-only-staged"),
    pytest.param(4, EVT, False, "9.9.9", "main", 2, REASON_COHORT_TARGET, id="vc-off-downgrade"),
    pytest.param(4, EVT, False, "2.0.0", "main", None, REASON_LATEST, id="vc-off-on-target"),
    pytest.param(1, EVT, False, "9.9.9", "main", None, REASON_LATEST, id="vc-on-no-downgrade"),
    pytest.param(5, EVT, False, "1.0.0", "main", 6, REASON_MPT, id="cohort-mpt"),
    pytest.param(5, DVT, False, "1.5.0", "main", 2, REASON_FULL, id="cohort-mpt-passed"),
    pytest.param(99, EVT, False, "1.0.0", "main", None, REASON_NO_RELEASE, id="unknown-cohort"),
]


@pytest.mark.parametrize("cohort, hw, staged, current, sw, release_id, reason", POLL_CASES)
def test_poll(cohort, hw, staged, current, sw, release_id, reason):
    assert poll(cohort, hw, staged, current, sw=sw) == Decision(release_id, reason)


OVERRIDE_CASES = [
    # (cohort, hw, current, override release, release id, reason)
    pytest.param(1, EVT, "2.0.0", full(20, "0.5.0"), 20, REASON_OVERRIDE, id="downgrade"),
    pytest.param(5, EVT, "1.0.0", RELEASES[2], 2, REASON_OVERRIDE, id="bypasses-mpt"),
    pytest.param(1, EVT, "2.0.0", delta(21, "1.0.0", "2.5.0"), 21, REASON_OVERRIDE,
                 id="bypasses-delta-from-check"),
    pytest.param(1, EVT, "0.5.0", full(22, "0.5.0"), None, REASON_LATEST, id="equals-current"),
    pytest.param(1, DVT, "1.0.0", full(23, "4.0.0", hw=(EVT,)), None, REASON_NO_HARDWARE,
                 id="no-payload-for-hw"),
    pytest.param(99, EVT, "1.0.0", full(24, "4.0.0"), 24, REASON_OVERRIDE, id="no-cohort-release"),
    pytest.param(1, EVT, None, full(25, "4.0.0"), 25, REASON_OVERRIDE, id="absent-current"),
]


@pytest.mark.parametrize("cohort, hw, current, override, release_id, reason", OVERRIDE_CASES)
def test_override(cohort, hw, current, override, release_id, reason):
    assert poll(cohort, hw, False, current, override=override) == Decision(release_id, reason)
    assert poll(cohort, hw, True, current, override=override) == Decision(release_id, reason)


def test_build_tables_keys():
    # Both staged flags exist wherever any activation exists; unknown release ignored.
    assert set(TABLES) == {
        (1, "main", EVT, False), (1, "main", EVT, True),
        (1, "main", DVT, False), (1, "main", DVT, True),
        (1, "modem", EVT, False), (1, "modem", EVT, True),
        (2, "main", EVT, False), (2, "main", EVT, True),
        (2, "main", DVT, False), (2, "main", DVT, True),
        (3, "main", EVT, False), (3, "main", EVT, True),
        (3, "main", DVT, False), (3, "main", DVT, True),
        (4, "main", EVT, False), (4, "main", EVT, True),
        (4, "main", DVT, False), (4, "main", DVT, True),
        (5, "main", EVT, False), (5, "main", EVT, True),
        (5, "main", DVT, False), (5, "main", DVT, True),
    }
    assert ACTIVE == {(1, "main"), (1, "modem"), (2, "main"), (3, "main"), (4, "main"),
                      (5, "main")}
    assert TABLES[(3, "main", EVT, False)].top_full is None
    assert TABLES[(1, "main", EVT, True)].top_full == ("3.0.0", 3)
    assert TABLES[(4, "main", EVT, False)].version_checking is False
    assert TABLES[(5, "main", EVT, False)].version_checking is True


RESOLVE_WITHOUT_TABLE = [
    pytest.param(True, Decision(None, REASON_NO_HARDWARE), id="active-elsewhere"),
    pytest.param(False, Decision(None, REASON_NO_RELEASE), id="nothing-active"),
]


@pytest.mark.parametrize("has_active_release, expected", RESOLVE_WITHOUT_TABLE)
def test_resolve_without_table(has_active_release, expected):
    assert resolve("1.0.0", EVT, None, has_active_release=has_active_release) == expected


# --- serialisation and memoisation ----------------------------------------

CURRENTS = [None, "", "0.5.0", "0.9.0", "1.0.0", "1.1.0", "1.5.0", "1.5.0-rc.1", "1.6.0",
            "1.8.0", "2.0.0", "2.1.0", "3.0.0", "3.4.0.2", "3.4.0.10", "v4.4.0", "9.9.9",
            "garbage", "v2.0.0"]
ROUND_TRIP_TABLES = [
    pytest.param(build_table(catalog, version_checking=vc), id=f"{name}-vc{int(vc)}")
    for name, catalog in [("basic", BASIC), ("two-mpts", TWO_MPTS), ("delta-mpt", DELTA_OVER_MPT),
                          ("bad-deltas", BAD_DELTAS), ("non-semver", NON_SEMVER),
                          ("deltas-only", DELTAS_ONLY), ("empty", [])]
    for vc in (True, False)
]


@pytest.mark.parametrize("table", ROUND_TRIP_TABLES)
def test_json_round_trip(table):
    encoded = json.dumps(table.to_json())
    restored = DecisionTable.from_json(json.loads(encoded))
    assert restored == table
    assert restored.to_json() == table.to_json()
    assert [restored.decide(c) for c in CURRENTS] == [table.decide(c) for c in CURRENTS]


def test_from_json_normalises_hand_written_input():
    table = DecisionTable.from_json({
        "deltas": {"2.0.0": [7, "1.0.0"], "1.0.0": [8, "1.1.0"]},
        "mpts": [["1.8.0", 3], ["1.5.0", 2]],
        "top_full": ["2.0.0", 4],
        "version_checking": True,
    })
    assert table.deltas == {"1.0.0": (8, "1.1.0")}
    assert table.mpts == (("1.5.0", 2), ("1.8.0", 3))
    assert table.decide("2.0.0") == Decision(None, REASON_LATEST)
    assert table.decide("1.6.0") == Decision(3, REASON_MPT)


def test_memo_stays_bounded_and_correct():
    table = build_table(ONE_MPT)
    for i in range(5000):
        assert table.decide(f"0.{i}.0") == Decision(2, REASON_MPT)
    assert len(table._memo) <= 4096
    assert table.decide("1.5.0") == Decision(3, REASON_FULL)
    assert table.decide("0.1.0") == Decision(2, REASON_MPT)


def test_values_are_immutable():
    release = full(1, "1.0.0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        release.version = "2.0.0"
    with pytest.raises(dataclasses.FrozenInstanceError):
        build_table([release]).top_full = None
    assert not release.is_delta
    assert delta(2, "1.0.0", "1.1.0").is_delta
