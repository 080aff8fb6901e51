"""Staged rollouts: who of a cohort is staged for an activation, as pure rules (no I/O).

Each staged activation draws its devices in one fixed pseudo-random order, the order of
`stage_hash(salt, serial)` with a salt of its own: widening adds the next devices of that order
(so every device staged stays staged), narrowing takes back the last ones that have not taken
the release. Devices that join the cohort later are staged, when the activation asks for it, by
the same hash falling below the percentage (`newcomer_threshold`): the same answer on every
process and host, and nothing to write when such a device polls. The database computes the same
hash (the SQL function `stage_hash`, migration 0007), so counts and draws agree with polls.
"""
from __future__ import annotations

import hashlib
import secrets

_HALF = 1 << 63


def stage_hash(salt: int, serial: str) -> int:
    """A device's place in the activation's draw: the first 8 bytes of md5("salt:serial") as a
    signed 64-bit integer (what PostgreSQL's bigint holds); uniform over the range."""
    return int.from_bytes(hashlib.md5(f"{salt}:{serial}".encode()).digest()[:8], "big", signed=True)


def new_salt() -> int:
    """A fresh salt for a new activation's draw (positive, fits a bigint)."""
    return secrets.randbits(62) + 1


def target_count(devices: int, percent: int) -> int:
    """round(N x p / 100), halves rounded up: how many devices a percentage stages."""
    return (devices * percent * 2 + 100) // 200


def newcomer_threshold(percent: int) -> int:
    """Hashes below this are staged when they join later: the fraction `percent` % of the hash
    range (0 % stages none; a staged rollout is at most 99 %, 100 % is a normal activation)."""
    if not 0 <= percent <= 99:
        raise ValueError("a staged rollout's percentage is 0-99")
    return -_HALF + (percent << 64) // 100


def newcomer_staged(salt: int, serial: str, threshold: int | None) -> bool:
    """Whether a device the draw never saw is staged (`threshold` None: newcomers are not)."""
    return threshold is not None and stage_hash(salt, serial) < threshold


def plan_change(staged: int, devices: int, percent: int, takers: int) -> tuple[int, int]:
    """(devices to add, devices to take back) to bring a staged set of `staged` devices of a
    `devices`-device cohort to `percent`: widening adds up to round(N x p); narrowing takes
    back only devices that have not taken the release (`takers` of the staged have), so the
    set never drops below its takers."""
    want = target_count(devices, percent)
    if want >= staged:
        return want - staged, 0
    return 0, staged - max(want, takers)
