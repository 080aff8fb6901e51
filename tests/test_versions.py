import itertools
import random
import re

import pytest

from gateway.domain.versions import check_version, compare_versions, is_semver, version_key

SEMVER_CASES = [
    ("0.0.0", True),
    ("1.2.3", True),
    ("10.20.30", True),
    ("1.0.0-alpha", True),
    ("1.0.0-alpha.1", True),
    ("1.0.0-0.3.7", True),
    ("1.0.0-x.7.z.92", True),
    ("1.0.0-x-y-z.--", True),
    ("1.0.0-alpha+001", True),
    ("1.0.0+20130313144700", True),
    ("1.0.0-beta+exp.sha.5114f85", True),
    ("1.0.0+21AF26D3----117B344092BD", True),
    ("1.0.0-0a", True),  # alphanumeric identifier may start with 0
    ("1.2", False),
    ("1.2.3.4", False),
    ("01.2.3", False),
    ("1.02.3", False),
    ("1.2.03", False),
    ("1.2.3-01", False),  # numeric pre-release identifier with leading zero
    ("1.2.3-", False),
    ("1.2.3+", False),
    ("1.2.3-alpha..1", False),
    ("1.2.3+build..1", False),
    ("v1.2.3", False),
    ("1.2.3 ", False),
    ("1.2.3-alpha_1", False),
    ("", False),
    ("١.٢.٣", False),  # non-ASCII digits
]


@pytest.mark.parametrize("s, expected", SEMVER_CASES)
def test_is_semver(s, expected):
    assert is_semver(s) is expected


# Each chain must be strictly ascending.
ASCENDING_CHAINS = [
    pytest.param(
        ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
         "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0"],
        id="semver-spec-example",
    ),
    pytest.param(
        ["1.0.0rc1", "1.0.0", "1.0.1-dev", "1.0.1-rc2", "1.0.1", "1.0.12", "1.0.20"],
        id="memfault-example",
    ),
    pytest.param(["1.9.0", "1.10.0", "1.11.0"], id="numeric-minor"),
    pytest.param(["0.9.0", "1.0.0", "1.99.99", "2.0.0"], id="major"),
    pytest.param(["3.4.0", "3.4.0.2", "3.4.0.10"], id="four-part"),
    pytest.param(["v4.4.0", "v4.10.0"], id="v-prefix"),
    pytest.param(["mfw_nrf9160_1.3.7", "mfw_nrf9160_1.3.10"], id="text-prefix"),
    pytest.param(["1.0.0", "1.0.0+a", "1.0.0+b", "1.0.0+b.2", "1.0.0+b.10"], id="build-tiebreak"),
    pytest.param(["1.0.0-1", "1.0.0-2", "1.0.0-10", "1.0.0-a"], id="numeric-pre-before-alpha"),
    pytest.param(["1.0.0-rc.1", "1.0.0-rc.1+build"], id="pre-with-build"),
    pytest.param(["1.0.0-dev", "1.0.0", "1.0.0.1"], id="suffix-vs-extra-component"),
    pytest.param(["build 9", "build 10", "0.0.1"], id="no-numeric-core-first"),
]


@pytest.mark.parametrize("chain", ASCENDING_CHAINS)
def test_ascending_chains(chain):
    for a, b in itertools.pairwise(chain):
        assert compare_versions(a, b) == -1, (a, b)
        assert compare_versions(b, a) == 1, (b, a)
    assert sorted(reversed(chain), key=version_key) == chain


COMPARE_CASES = [
    ("3.4.0.2", "3.4.0.10", -1),
    ("1.9.0", "1.10.0", -1),
    ("1.10.0", "1.11.0", -1),
    ("2.0.0", "1.99.99", 1),
    ("0.9.0", "1.0.0", -1),
    ("1.0.0", "1.0.0", 0),
    ("v4.10.0", "v4.4.0", 1),
    ("V4.10.0", "4.4.0", 1),
    ("v4.4.0", "4.5.0", -1),
    ("3.4.0.10", "3.4.0", 1),
    ("1.0.0", "1.0.0.1", -1),
    ("1.0.0rc1", "1.0.0", -1),
    ("1.0.0-rc.1", "1.0.0", -1),
    ("1.0.0-dev", "1.0.0", -1),
    ("1.0.0+a", "1.0.0", 1),
    ("1.0.0-beta.11", "1.0.0-beta.2", 1),
    ("1.0.0-alpha", "1.0.0-alpha.1", -1),
    ("1.0.0-rc.1", "0.99.99", 1),
    ("mfw_nrf9160_1.3.10", "mfw_nrf9160_1.3.7", 1),
    ("1.0.0-alpha.99999999999999999999", "1.0.0-alpha.100000000000000000000", -1),
    ("9" * 5000 + ".0.0", "1" + "0" * 5000 + ".0.0", -1),  # beyond int() digit limit
    ("", "0.0.1", -1),
]


@pytest.mark.parametrize("a, b, expected", COMPARE_CASES)
def test_compare_versions(a, b, expected):
    assert compare_versions(a, b) == expected
    assert compare_versions(b, a) == -expected


def test_distinct_strings_never_compare_equal():
    # Equal precedence in SemVer, but the order must stay deterministic.
    for a, b in [("v1.0.0", "1.0.0"), ("1.0.0-rc.1", "1.0.0rc1"), ("1.01.0", "1.1.0")]:
        assert compare_versions(a, b) != 0
        assert version_key(a) != version_key(b)


ODD_VERSIONS = [
    "", " ", "v", "V", "vv1", "...", "1..2", "1.", ".1", "+", "-", "1.0.0+", "1.0.0-",
    "\x00", "é1.0", "١.٢.٣", "1.0.0\n", "v" * 300, "1" * 10000, "1.0.0-" + "a." * 500 + "b",
    "(beta) [2]/x\\y:z",
]


@pytest.mark.parametrize("s", ODD_VERSIONS)
def test_version_key_never_raises_and_is_hashable(s):
    key = version_key(s)
    assert hash(key) == hash(version_key(s))
    assert compare_versions(s, "1.0.0") in (-1, 1)
    assert compare_versions(s, s) == 0


MIXED = [
    "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
    "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0rc1", "1.0.0", "1.0.0+a", "1.0.0+b", "v1.0.0",
    "1.0.0.1", "1.0.1-dev", "1.0.1-rc2", "1.0.1", "1.0.12", "1.0.20", "1.9.0", "1.10.0",
    "3.4.0", "3.4.0.2", "3.4.0.10", "v4.4.0", "v4.10.0", "mfw_nrf9160_1.3.7",
    "mfw_nrf9160_1.3.10", "build 7", "", "0.9.0", "1.99.99", "2.0.0", "1.2", "1.0.0-0",
]


def test_mixed_order_is_total_and_consistent():
    assert len(set(MIXED)) == len(MIXED)
    ordered = sorted(MIXED, key=version_key)
    for seed in range(5):
        shuffled = MIXED[:]
        random.Random(seed).shuffle(shuffled)
        assert sorted(shuffled, key=version_key) == ordered
        assert sorted(shuffled, key=version_key, reverse=True) == ordered[::-1]
    position = {v: i for i, v in enumerate(ordered)}
    for a, b in itertools.product(MIXED, repeat=2):
        expected = (position[a] > position[b]) - (position[a] < position[b])
        assert compare_versions(a, b) == expected, (a, b)
        assert compare_versions(a, b) == -compare_versions(b, a)
    for a, b, c in itertools.permutations(MIXED[:12], 3):
        if compare_versions(a, b) < 0 and compare_versions(b, c) < 0:
            assert compare_versions(a, c) < 0, (a, b, c)


def test_version_key_is_cached():
    version_key.cache_clear()
    version_key("5.6.7")
    version_key("5.6.7")
    info = version_key.cache_info()
    assert info.hits >= 1 and info.maxsize is not None


CHECK_OK = [
    ("1.2.3", True),
    ("1.0.0-rc.1+build.5", True),
    ("1.2.3", False),
    ("v1.2", False),
    ("3.4.0.10", False),
    ("mfw_nrf9160_1.3.7", False),
    ("1.0 (build 5) [dev]/x:y\\z", False),
    ("a" * 128, False),
]


@pytest.mark.parametrize("s, strict", CHECK_OK)
def test_check_version_accepts(s, strict):
    assert check_version(s, strict) is None


CHECK_BAD = [
    ("", False, "empty"),
    ("", True, "empty"),
    ("a" * 129, False, "129 characters"),
    ("1.0.0!", False, "'!'"),
    ("1.0.0\n", False, "disallowed"),
    ("1.0.0é", False, "disallowed"),
    ("1.0;0", True, "disallowed"),
    ("v1.2.3", True, "SemVer"),
    ("1.2", True, "SemVer"),
    ("01.2.3", True, "SemVer"),
    ("1.2.3-01", True, "SemVer"),
    (None, False, "string"),
]


@pytest.mark.parametrize("s, strict, message", CHECK_BAD)
def test_check_version_rejects(s, strict, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_version(s, strict)
