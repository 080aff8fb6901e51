"""The simulated fleet's shape, shared by the seeder and the load generators: a device's
hardware version and current version are functions of its serial index (as in poll.lua)."""
from __future__ import annotations

VERSIONS = ["2.0.0", "2.0.0", "2.0.0", "2.0.0", "2.0.0", "2.0.0", "1.0.0", "1.0.0", "1.5.0", ""]
HARDWARE = ["mp", "mp", "mp", "mp", "mp", "mp", "mp", "evt", "evt", "dvt"]


def serial(i: int) -> str:
    return f"D{i}"


def version_of(i: int) -> str | None:
    """Lua arrays are 1-based: versions[(i % 10) + 1] there is VERSIONS[i % 10] here."""
    return VERSIONS[i % len(VERSIONS)] or None


def hardware_of(i: int) -> str:
    return HARDWARE[(i * 7) % len(HARDWARE)]
