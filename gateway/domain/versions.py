"""Version validation and a total order over arbitrary version strings.

Every string maps to a key ``(core, marker, pre, build, raw)``:

* ``core``   -- the leading dotted numbers (a leading ``v``/``V`` is skipped);
* ``marker`` -- 0 for a pre-release-like tail, 1 for a plain release, so
  ``1.0.0rc1 < 1.0.0``;
* ``pre``    -- SemVer pre-release identifiers, or a natural-sort key of the tail;
* ``build``  -- build metadata, compared only to break precedence ties;
* ``raw``    -- the string itself, so distinct strings never compare equal.

For two SemVer strings this reproduces SemVer 2.0 precedence exactly.
Since everything is one plain tuple per string, the order is total and
transitive even when SemVer and free-form versions are mixed.
"""

from __future__ import annotations

import functools
import re

__all__ = ["is_semver", "version_key", "compare_versions", "check_version", "MAX_VERSION_LENGTH"]

MAX_VERSION_LENGTH = 128

# Explicit [0-9] rather than \d: \d would also match non-ASCII digits.
_NUM = r"0|[1-9][0-9]*"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD_ID = r"[0-9A-Za-z-]+"
_SEMVER_RE = re.compile(
    rf"({_NUM})\.({_NUM})\.({_NUM})"
    rf"(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?"
    rf"(?:\+({_BUILD_ID}(?:\.{_BUILD_ID})*))?"
)
_CORE_RE = re.compile(r"[vV]?([0-9]+(?:\.[0-9]+)*)")
_TOKEN_RE = re.compile(r"[0-9]+|[A-Za-z]+")

# Memfault's allowed set for software versions (space and backslash included).
_ALLOWED_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.+:\\()[]/"
)

_NO_BUILD = (0,)


def _num(digits: str) -> tuple[int, str]:
    # (length, digits) compares like the integer without int(), which raises
    # for very long digit runs (Python's int max-str-digits limit).
    stripped = digits.lstrip("0")
    return (len(stripped), stripped)


def _natural(text: str) -> tuple:
    # Tagged tokens so numbers and words are never compared with each other;
    # separators are dropped, the raw string in the key keeps the order total.
    return tuple(
        (0, _num(tok)) if tok[0] in "0123456789" else (1, tok)
        for tok in _TOKEN_RE.findall(text)
    )


def _pre_ident(ident: str) -> tuple:
    # SemVer: numeric identifiers sort numerically and below alphanumeric ones.
    return (0, _num(ident)) if ident.isdigit() else (1, ident)


def is_semver(s: str) -> bool:
    """Return True if ``s`` is a valid SemVer 2.0 version string."""
    return isinstance(s, str) and _SEMVER_RE.fullmatch(s) is not None


@functools.lru_cache(maxsize=16384)
def version_key(s: str) -> tuple:
    """Return a hashable sort key for any version string; never raises.

    SemVer strings get SemVer precedence (ties broken by build metadata),
    anything else a natural order that interleaves sensibly with SemVer.
    """
    m = _CORE_RE.match(s)
    if m is None:
        return ((), 0, _natural(s), _NO_BUILD, s)

    sm = _SEMVER_RE.fullmatch(s, m.start(1))
    if sm is not None:
        core = tuple(_num(part) for part in sm.group(1, 2, 3))
        pre, build = sm.group(4), sm.group(5)
        pre_key = tuple(_pre_ident(i) for i in pre.split(".")) if pre else ()
    else:
        core = tuple(_num(part) for part in m.group(1).split("."))
        pre, sep, build = s[m.end():].partition("+")
        build = build if sep else None
        pre_key = _natural(pre)

    build_key = _NO_BUILD if build is None else (1, _natural(build))
    return (core, 0 if pre else 1, pre_key, build_key, s)


def compare_versions(a: str, b: str) -> int:
    """Return -1, 0 or 1 as ``a`` orders before, equal to or after ``b``."""
    ka, kb = version_key(a), version_key(b)
    return (ka > kb) - (ka < kb)


def check_version(s: str, strict: bool) -> None:
    """Raise ValueError if ``s`` is not an acceptable version string.

    Always checks length (1..128) and the allowed character set; with
    ``strict`` the string must also be valid SemVer 2.0.
    """
    if not isinstance(s, str):
        raise ValueError(f"version must be a string, got {type(s).__name__}")
    if not s:
        raise ValueError("version must not be empty")
    if len(s) > MAX_VERSION_LENGTH:
        raise ValueError(
            f"version is {len(s)} characters long; at most {MAX_VERSION_LENGTH} allowed"
        )
    bad = sorted({ch for ch in s if ch not in _ALLOWED_CHARS})
    if bad:
        shown = ", ".join(repr(ch) for ch in bad)
        raise ValueError(
            f"version {s!r} contains disallowed characters: {shown} "
            "(allowed: a-z A-Z 0-9, space and -_.+:\\()[]/)"
        )
    if strict and not is_semver(s):
        raise ValueError(f"version {s!r} is not a valid SemVer 2.0 version (e.g. 1.2.3)")
