"""Record/replay: the HTTP behaviour of the whole gateway, pinned by a golden recording.

tests/replay_scenario.py drives the app through about two hundred requests (management API,
Memfault and hawkBit DDI device APIs, artifacts, error answers); every exchange is masked
(`replay_scenario.mask`: times, generated secrets, URL signatures, key material) and compared,
in order, with tests/replay/recorded.json. The first exchange that differs fails the test with
its name, method, path and what differs (status, headers, the JSON paths of the body).

Re-recording: `OTA_REPLAY_RECORD=1 .venv/bin/python -m pytest -q tests/test_replay.py` rewrites
tests/replay/recorded.json from the code under test instead of comparing. Do this ONLY for an
intentional behaviour change, and review the diff of recorded.json like code: a refactor must
replay the existing recording unchanged. `OTA_REPLAY_FILE=path` reads (or, when recording,
writes) another file, e.g. to record twice and diff the two to check the scenario is
deterministic.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import replay_scenario

GOLDEN = Path(__file__).parent / "replay" / "recorded.json"
MAX_DIFFS = 25


@pytest.fixture
def settings(settings):
    """conftest's settings with the periodic check-in flush out of the way. Belt and braces: the
    scenario already waits for the write-behind after every device request, so no answer depends
    on when a background flush runs; without one, none runs while the scenario does."""
    settings.flush_interval = 3600.0
    return settings


def _normal(obj):
    """What survives a JSON round trip (tuples become lists, keys strings), as stored."""
    return json.loads(json.dumps(obj))


def dumps(exchanges: list[dict]) -> str:
    return json.dumps(exchanges, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _diff(expected, got, path: str = "body", out: list[str] | None = None) -> list[str]:
    """The JSON paths at which two values differ (at most MAX_DIFFS)."""
    out = [] if out is None else out
    if len(out) >= MAX_DIFFS:
        return out
    if isinstance(expected, dict) and isinstance(got, dict):
        for k in sorted(set(expected) | set(got)):
            if k not in got:
                out.append(f"  {path}.{k}: missing (expected {_short(expected[k])})")
            elif k not in expected:
                out.append(f"  {path}.{k}: unexpected {_short(got[k])}")
            else:
                _diff(expected[k], got[k], f"{path}.{k}", out)
    elif isinstance(expected, list) and isinstance(got, list):
        for i, (e, g) in enumerate(zip(expected, got)):
            _diff(e, g, f"{path}[{i}]", out)
        if len(expected) != len(got):
            out.append(f"  {path}: {len(expected)} items expected, got {len(got)}")
    elif expected != got:
        out.append(f"  {path}: expected {_short(expected)}, got {_short(got)}")
    return out[:MAX_DIFFS]


def _short(v, limit: int = 300) -> str:
    s = json.dumps(v, sort_keys=True, ensure_ascii=False)
    return s if len(s) <= limit else s[:limit] + f"... ({len(s)} characters)"


def describe(index: int, expected: dict, got: dict) -> str:
    lines = [f"exchange #{index} differs from the recording {GOLDEN.name}:",
             f"  name:     {expected.get('name')!r}" + ("" if got.get("name") == expected.get("name")
                                                         else f" (replayed: {got.get('name')!r})"),
             f"  request:  {expected.get('method')} {expected.get('path')}"]
    if (got.get("method"), got.get("path")) != (expected.get("method"), expected.get("path")):
        lines.append(f"  replayed: {got.get('method')} {got.get('path')}")
    for field in ("status", "headers"):
        if expected.get(field) != got.get(field):
            lines.append(f"  {field}: expected {_short(expected.get(field))}, got {_short(got.get(field))}")
    if expected.get("request") != got.get("request"):
        lines.extend(_diff(expected.get("request"), got.get("request"), "request"))
    if expected.get("body") != got.get("body"):
        lines.append("  body differs at:")
        lines.extend(_diff(expected.get("body"), got.get("body")))
        lines.append(f"  expected body: {_short(expected.get('body'), 1500)}")
        lines.append(f"  got body:      {_short(got.get('body'), 1500)}")
    return "\n".join(lines)


def first_mismatch(expected: list[dict], got: list[dict]) -> str | None:
    for i, (e, g) in enumerate(zip(expected, got)):
        if e != g:
            return describe(i, e, g)
    return None


async def test_replay_matches_the_recording(client):
    target = Path(os.environ.get("OTA_REPLAY_FILE") or GOLDEN)
    raw: list[dict] = []
    error: BaseException | None = None
    try:
        await replay_scenario.run(client, raw)
    except Exception as e:  # noqa: BLE001 - reported below, after the first differing exchange
        error = e
    got = [_normal(replay_scenario.mask(ex)) for ex in raw]

    if os.environ.get("OTA_REPLAY_RECORD") == "1":
        import gateway

        if error is not None:
            raise error
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(dumps(got), encoding="utf-8")
        print(f"\nrecorded {len(got)} exchanges to {target} (gateway from {Path(gateway.__file__).parent})")
        return

    assert target.exists(), f"no recording at {target}: record one with OTA_REPLAY_RECORD=1 (see module docstring)"
    expected = json.loads(target.read_text(encoding="utf-8"))
    mismatch = first_mismatch(expected, got)
    if mismatch is not None:
        pytest.fail(mismatch + (f"\n(the scenario then stopped: {error!r})" if error else ""), pytrace=False)
    if error is not None:
        raise AssertionError(f"the scenario stopped after {len(got)} of {len(expected)} recorded exchanges, "
                             f"all matching so far") from error
    assert len(got) == len(expected), (
        f"{len(expected)} exchanges recorded, {len(got)} replayed; the first "
        + (f"extra one: {got[len(expected)]['name']!r}" if len(got) > len(expected)
           else f"missing one: {expected[len(got)]['name']!r}"))
