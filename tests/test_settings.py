"""Settings: config.TABLE is the one list of what the gateway reads from its environment; the
README's table ("Running it") documents exactly those variables, with the same flags and
defaults; nothing else in gateway/ reads an OTA_* variable; bad values stop the start with one
line naming the variable."""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import config
from gateway.config import TABLE, Settings, SettingsError

ROOT = Path(__file__).resolve().parent.parent


def running_it() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## Running it\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, 'README.md has no "## Running it" section'
    return m.group(1)


def readme_rows() -> list[tuple[list[str], list[str], str]]:
    """(flags, variables, meaning) of each row of the settings table."""
    lines = running_it().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"\|\s*flag\s*\|\s*environment\s*\|", line))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        flag, env, meaning = (c.strip() for c in line.strip().strip("|").split("|", 2))
        rows.append((re.findall(r"`(--[a-z-]+)`", flag), re.findall(r"`([A-Z][A-Z0-9_]*)`", env), meaning))
    return rows


def documented_default(meaning: str) -> str | None:
    """The default a row's meaning states: "(default `X`)", "(default: X)", "(default 200,000, about
    ...)", "(default 1,000,000; ...)" or "`X` (default)"."""
    m = re.search(r"\(default:? ([^;)]*)", meaning)
    if m:
        return m.group(1).split(", ")[0].strip().strip("`")
    m = re.search(r"`([^`]+)` \(default\)", meaning)
    return m.group(1) if m else None


def as_value(text: str, setting: config.Setting):
    """A documented default as the table's type: thousands separators and KiB/MiB/GiB allowed."""
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    m = re.fullmatch(r"(\d+) ?([KMG])iB", text)
    if m:
        text = str(int(m.group(1)) * 1024 ** " KMG".index(m.group(2)))
    return setting.check(text, "README.md")


def test_every_setting_is_documented_and_every_documented_variable_known():
    documented = {v for _, variables, _ in readme_rows() for v in variables}
    known = {s.env for s in TABLE}
    assert not known - documented, "add to README.md's table (Running it): " + ", ".join(sorted(known - documented))
    assert not documented - known, "README.md documents what config.TABLE lacks: " + ", ".join(
        sorted(documented - known))


def test_documented_flags_are_the_tables():
    for flags, variables, _ in readme_rows():
        for v in variables:
            want = [config.BY_ENV[v].flag] if config.BY_ENV[v].flag else []
            assert flags == want, f"{v}: README.md gives flag {flags}, config.TABLE {want}"
    usage = re.search(r"`ota-gateway serve ([^`]*)`", running_it())
    assert usage, "the serve usage line"
    assert re.findall(r"\[(--[a-z-]+)", usage.group(1)) == [s.flag for s in TABLE if s.flag]


def test_documented_defaults_match():
    checked = 0
    for _, variables, meaning in readme_rows():
        if len(variables) != 1:
            assert documented_default(meaning) is None, f"{variables}: one default for several variables"
            continue
        s = config.BY_ENV[variables[0]]
        text = documented_default(meaning)
        if s.default_text is None:
            assert text is None, f"{s.env}: README.md gives default {text!r}, config.TABLE none"
            continue
        assert text is not None, f"{s.env}: README.md does not state the default ({s.default_text})"
        if s.shown is not None:  # computed at start (CPU count, <data-dir>/artifacts): the words must agree
            assert text == s.shown, s.env
        else:
            assert as_value(text, s) == s.default, f"{s.env}: README.md says {text!r}, config.TABLE {s.default!r}"
        checked += 1
    assert checked == sum(1 for s in TABLE if s.default_text is not None)


def test_the_table_covers_every_settings_field_with_its_default():
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    in_table = {s.field for s in TABLE if not s.bootstrap_key}
    assert in_table | set(config.NOT_IN_ENV) == set(fields), "classify each Settings field"
    assert not in_table & set(config.NOT_IN_ENV)
    assert len({s.env for s in TABLE}) == len(TABLE) and len({s.field for s in TABLE}) == len(TABLE)
    for s in TABLE:
        if s.bootstrap_key or callable(s.default):
            continue
        assert s.default == fields[s.field].default, s.env
        if s.default not in (None, ""):  # the default passes its own check
            assert s.check(str(s.default), s.env) == s.default
    # unset, everything is the dataclass's default (workers aside: the CPU count)
    assert Settings.from_env({}) == Settings(workers=os.cpu_count() or 1)


def test_values_from_the_environment_and_flags():
    env = {"OTA_HOST": "0.0.0.0", "OTA_PORT": "9000", "OTA_WORKERS": " 3 ", "OTA_FLUSH_INTERVAL": "0.5",
           "OTA_GRACE_PERIOD": "20", "OTA_MAX_INFLIGHT": "64", "OTA_LISTEN_MODE": "ReusePort",
           "OTA_LOG_LEVEL": "warning", "DATABASE_URL": "postgresql://u:p@db/ota", "OTA_STORAGE_DIR": "",
           "OTA_ORG": "acme", "OTA_PROJECT_KEY": "k" * 32, "OTA_USER_EMAIL": "", "OTA_PG_SHARED_BUFFERS": "128MB"}
    s = Settings.from_env(env, port="9100", workers=None)
    assert (s.host, s.port, s.workers, s.flush_interval, s.grace_period, s.max_inflight) == \
        ("0.0.0.0", 9100, 3, 0.5, 20.0, 64)
    assert (s.listen_mode, s.log_level, s.database_url, s.storage_dir) == \
        ("reuseport", "WARNING", "postgresql://u:p@db/ota", None)
    assert s.bootstrap == {"org": "acme", "project_key": "k" * 32} and s.pg_shared_buffers == "128MB"
    assert config.env_setting("log_level", {"OTA_LOG_LEVEL": "debug"}) == "DEBUG"


@pytest.mark.parametrize("env,overrides,named", [
    ({"OTA_WORKERS": "abc"}, {}, "OTA_WORKERS='abc'"),
    ({"OTA_WORKERS": "0"}, {}, "OTA_WORKERS='0'"),
    ({"OTA_PORT": "70000"}, {}, "OTA_PORT='70000'"),
    ({"OTA_FLUSH_INTERVAL": "nan"}, {}, "OTA_FLUSH_INTERVAL='nan'"),
    ({"OTA_GRACE_PERIOD": "-1"}, {}, "OTA_GRACE_PERIOD='-1'"),
    ({"OTA_MAX_INFLIGHT": "1k"}, {}, "OTA_MAX_INFLIGHT='1k'"),
    ({"OTA_LISTEN_MODE": "fast"}, {}, "OTA_LISTEN_MODE='fast'"),
    ({"OTA_LOG_LEVEL": "verbose"}, {}, "OTA_LOG_LEVEL='verbose'"),
    ({"OTA_PUBLIC_URL": "ota.example.com"}, {}, "OTA_PUBLIC_URL='ota.example.com'"),
    ({}, {"workers": "many"}, "--workers='many'"),
    ({}, {"port": 0}, "--port=0"),
])
def test_bad_values_name_the_variable(env, overrides, named):
    with pytest.raises(SettingsError) as e:
        Settings.from_env(env, **overrides)
    assert str(e.value).startswith(named + " is not valid: expected ")


def test_a_bad_secret_is_not_repeated():
    with pytest.raises(SettingsError) as e:
        Settings.from_env({"DATABASE_URL": "mysql://root:hunter2@db/x"})
    assert "DATABASE_URL" in str(e.value) and "hunter2" not in str(e.value)


@pytest.mark.parametrize("env,args,named", [
    ({"OTA_WORKERS": "abc"}, ["serve"], "OTA_WORKERS='abc'"),
    ({"OTA_LOG_LEVEL": "loud"}, ["serve"], "OTA_LOG_LEVEL='loud'"),
    ({}, ["serve", "--port", "http"], "--port='http'"),
    ({"DATABASE_URL": "postgresql://x", "OTA_DDI_CACHE_SIZE": "-5"}, ["migrate"], "OTA_DDI_CACHE_SIZE='-5'"),
])
def test_a_bad_value_stops_the_start_with_one_line(env, args, named, tmp_path):
    clean = {k: v for k, v in os.environ.items() if k not in config.BY_ENV}
    if args[0] == "serve":
        args = [*args, "--data-dir", str(tmp_path)]
    out = subprocess.run([sys.executable, "-m", "gateway", *args], env={**clean, **env}, capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith(f"ota-gateway: {named} is not valid") and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "pg").exists()  # stopped before anything started


def test_serve_flags_come_from_the_table():
    out = subprocess.run([sys.executable, "-m", "gateway", "serve", "--help"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    for s in TABLE:
        if s.flag:
            assert s.flag in out.stdout and s.env in out.stdout


# what reads the environment outside config.py, and why
ELSEWHERE = {
    # the management client (README "Managing releases"): its connection, not the gateway's settings
    "gateway/client/": {"OTA_URL", "OTA_TOKEN", "OTA_ORG", "OTA_PROJECT"},
}
READ = re.compile(r"""(?:environ\.get\(|environ\[|getenv\()\s*f?["']((?:OTA_|DATABASE_URL)[A-Z0-9_]*)""")


def test_nothing_else_reads_an_ota_variable():
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "gateway/config.py":
            continue
        allowed = set().union(*(v for k, v in ELSEWHERE.items() if rel.startswith(k)))
        for name in READ.findall(path.read_text()):
            assert name in allowed, f"{rel} reads {name} itself: read it from Settings (config.TABLE)"


def test_deploy_files_set_only_known_variables_to_valid_values():
    """deploy/ (Docker, compose, Kubernetes, systemd) sets settings by name: each must be one the
    gateway reads, with a value it accepts."""
    assigned = re.compile(r"""(?:^|[\s{,])(?:name:\s*)?((?:OTA_|DATABASE_URL)[A-Z0-9_]*)(?::\s*|=|,\s*value:\s*)"""
                          r"""["']?([^"'\s,}#]*)""", re.M)
    seen = 0
    for path in sorted((ROOT / "deploy").rglob("*")):
        if not path.is_file() or path.suffix not in ("", ".yaml", ".yml", ".service", ".env"):
            continue
        for name, value in assigned.findall(path.read_text()):
            assert name in config.BY_ENV, f"{path.relative_to(ROOT)} sets {name}, which the gateway does not read"
            if value and not value.startswith("$"):
                config.BY_ENV[name].check(value, f"{path.relative_to(ROOT)}: {name}")
                seen += 1
    assert seen >= 10
