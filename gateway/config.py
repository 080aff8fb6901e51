"""Settings: one table (`TABLE`) of every setting the gateway reads from its environment, with
the command-line flag that overrides it, its type, default and help. `Settings.from_env` reads
the environment through that table and nothing else in the gateway reads an OTA_* variable;
`tests/test_settings.py` checks README.md's table against this one.

A value that does not parse (`OTA_WORKERS=abc`) or is out of range stops the start with a
`SettingsError` naming the variable (or flag), which `ota-gateway` prints as one line.
"""
from __future__ import annotations

import argparse
import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class SettingsError(ValueError):
    """A setting's value is unusable; the message names the variable or flag."""


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = "./.ota-data"
    workers: int = 1
    public_url: str = ""
    database_url: str | None = None
    storage_dir: str | None = None           # artifacts; default <data_dir>/artifacts
    flush_interval: float = 1.0              # check-in write-behind period (seconds)
    checkin_buffer_max: int = 50_000
    last_seen_granularity: float = 300.0     # rewrite last_seen at most this often per device
    ddi_cache_size: int = 200_000            # DDI device states kept per worker (LRU)
    ddi_shared_size: int = 1_000_000         # quiet DDI device states shared by a host's workers
    max_upload_size: int = 2 * 1024**3
    url_ttl: int = 6 * 3600                  # signed download URLs
    upload_ttl: int = 3600
    grace_period: float = 30.0               # graceful shutdown: transfers in flight may finish
    min_transfer_rate: float = 500.0         # bytes/s a transfer must average over the window (0: off)
    transfer_rate_window: float = 60.0       # seconds
    max_inflight: int = 1024                 # concurrent requests per process before shedding (503)
    accel_redirect: str | None = None        # e.g. /_artifacts/: nginx serves artifact bytes
    listen_mode: str = "shared"              # one accept queue, or "reuseport" (a socket per worker)
    metrics_dir: str | None = None
    bootstrap: dict = field(default_factory=dict)
    log_level: str = "INFO"
    pg_shared_buffers: str = "512MB"         # the embedded PostgreSQL's shared_buffers
    metrics_token: str | None = None         # /metrics needs `Authorization: Bearer <this>` when set
    metrics_fleet_labels: str = "on"         # "off": no per-organization families on /metrics
    trusted_proxies: str = ""                # proxies whose X-Forwarded-For names the client (CIDRs)
    retain_history_days: int = 180           # version history kept (0: forever); each device's newest row always
    retain_feedback_days: int = 180          # DDI feedback of closed actions kept (0: forever)
    retain_audit_days: int = 730             # audit log kept (0: forever)

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def effective_storage_dir(self) -> str:
        return self.storage_dir or os.path.join(self.data_dir, "artifacts")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, /, **overrides) -> Settings:
        """Every setting of `TABLE` from the environment (`os.environ` unless given), then the
        explicit (non-None) overrides, e.g. from flags, checked like the environment's values."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        bootstrap: dict[str, str] = {}
        for s in TABLE:
            value = s.read(env)
            if s.bootstrap_key:
                if value is not None:
                    bootstrap[s.bootstrap_key] = value
            else:
                values[s.field] = value
        settings = cls(**values, bootstrap=bootstrap)
        for name, value in overrides.items():
            if value is None:
                continue
            s = BY_FIELD.get(name)
            if s is not None:
                value = s.check(value, s.flag or name)
            setattr(settings, name, value)
        return settings


# -- the table --------------------------------------------------------------------------------

_KINDS = {"str": "text", "int": "a whole number", "float": "a number", "url": "a URL", "choice": "one of",
          "cidrs": "comma-separated IP addresses or CIDRs"}


@dataclass(frozen=True)
class Setting:
    """One setting: where it comes from, what it must look like, what it is for."""

    env: str                                 # environment variable
    field: str                               # Settings attribute; "bootstrap.KEY" for Settings.bootstrap[KEY]
    type: str                                # str, int, float, url (scheme checked) or choice
    default: Any                             # when unset (or empty); a callable is called at start
    help: str                                # one line
    flag: str | None = None                  # `ota-gateway serve` flag overriding it
    choices: tuple[str, ...] = ()            # type "choice": the values allowed (case-insensitive)
    minimum: float | None = None
    maximum: float | None = None
    schemes: tuple[str, ...] = ("http", "https")  # type "url"
    shown: str | None = None                 # the default as documented when it is computed
    secret: bool = False                     # never repeat the value in an error

    @property
    def bootstrap_key(self) -> str | None:
        return self.field.partition(".")[2] if self.field.startswith("bootstrap.") else None

    @property
    def default_text(self) -> str | None:
        """The default as a person reads it, or None when there is none to state."""
        if self.shown is not None:
            return self.shown
        return None if self.default in (None, "") else str(self.default)

    def read(self, environ: Mapping[str, str]) -> Any:
        """This setting's value in `environ` (unset or empty: the default)."""
        text = environ.get(self.env, "")
        if not text.strip():
            return self.default() if callable(self.default) else self.default
        return self.check(text, self.env)

    def check(self, value: Any, where: str) -> Any:
        """`value` (text from the environment or a flag, or already typed) parsed and checked;
        SettingsError naming `where` if it is unusable."""
        def bad(expected: str) -> SettingsError:
            given = where if self.secret else f"{where}={value!r}"
            return SettingsError(f"{given} is not valid: expected {expected} ({self.help})")

        if self.type in ("int", "float"):
            try:
                number = (int if self.type == "int" else float)(value.strip() if isinstance(value, str) else value)
            except (TypeError, ValueError):
                raise bad(_KINDS[self.type] + self._range_text()) from None
            if isinstance(number, float) and not math.isfinite(number):
                raise bad("a finite number")
            if (self.minimum is not None and number < self.minimum) or \
                    (self.maximum is not None and number > self.maximum):
                raise bad(_KINDS[self.type] + self._range_text())
            return number
        text = str(value).strip()
        if self.type == "cidrs":
            try:
                for part in filter(None, (p.strip() for p in text.split(","))):
                    ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise bad(_KINDS["cidrs"]) from None
            return text
        if self.type == "choice":
            for c in self.choices:
                if text.lower() == c.lower():
                    return c
            raise bad("one of " + ", ".join(self.choices))
        if self.type == "url":
            scheme, sep, rest = text.partition("://")
            if not sep or scheme.lower() not in self.schemes or not rest.strip("/"):
                raise bad("a URL starting with " + " or ".join(f"{s}://" for s in self.schemes))
        return text

    def _range_text(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f" from {self.minimum:g} to {self.maximum:g}"
        if self.minimum is not None:
            return f" of at least {self.minimum:g}"
        return ""


def _cpu_count() -> int:
    return os.cpu_count() or 1


TABLE: tuple[Setting, ...] = (
    Setting("OTA_HOST", "host", "str", Settings.host, "bind address", flag="--host"),
    Setting("OTA_PORT", "port", "int", Settings.port, "port", flag="--port", minimum=1, maximum=65535),
    Setting("OTA_DATA_DIR", "data_dir", "str", Settings.data_dir, "embedded PostgreSQL cluster and artifact store",
            flag="--data-dir"),
    Setting("OTA_WORKERS", "workers", "int", _cpu_count, "worker processes sharing the port", flag="--workers",
            minimum=1, shown="CPU count"),
    Setting("OTA_LISTEN_MODE", "listen_mode", "choice", Settings.listen_mode,
            "how workers share the port: one accept queue (shared) or a socket each (reuseport)",
            choices=("shared", "reuseport")),
    Setting("OTA_PUBLIC_URL", "public_url", "url", Settings.public_url,
            "base of every absolute URL handed to devices", flag="--public-url"),
    Setting("DATABASE_URL", "database_url", "url", Settings.database_url,
            "PostgreSQL to use instead of starting an embedded one", schemes=("postgresql", "postgres"),
            secret=True),
    Setting("OTA_PG_SHARED_BUFFERS", "pg_shared_buffers", "str", Settings.pg_shared_buffers,
            "shared_buffers of the embedded PostgreSQL"),
    Setting("OTA_ORG", "bootstrap.org", "str", None, "organization created at start if missing"),
    Setting("OTA_PROJECT", "bootstrap.project", "str", None, "project created at start if missing (with OTA_ORG)"),
    Setting("OTA_ORG_TOKEN", "bootstrap.org_token", "str", None, "org API token created at start if missing",
            secret=True),
    Setting("OTA_PROJECT_KEY", "bootstrap.project_key", "str", None,
            "project key created at start if missing (with OTA_PROJECT)", secret=True),
    Setting("OTA_USER_EMAIL", "bootstrap.user_email", "str", None, "manager user created at start if missing"),
    Setting("OTA_USER_SECRET", "bootstrap.user_secret", "str", None, "that user's secret (HTTP Basic)", secret=True),
    Setting("OTA_STORAGE_DIR", "storage_dir", "str", Settings.storage_dir, "artifact directory",
            shown="<data-dir>/artifacts"),
    Setting("OTA_FLUSH_INTERVAL", "flush_interval", "float", Settings.flush_interval,
            "check-in write-behind period in seconds", minimum=0.001),
    Setting("OTA_DDI_CACHE_SIZE", "ddi_cache_size", "int", Settings.ddi_cache_size,
            "DDI device states each worker keeps in memory", minimum=0),
    Setting("OTA_DDI_SHARED_SIZE", "ddi_shared_size", "int", Settings.ddi_shared_size,
            "quiet DDI device states shared by a host's workers (0: off)", minimum=0),
    Setting("OTA_MAX_UPLOAD_SIZE", "max_upload_size", "int", Settings.max_upload_size, "upload limit in bytes",
            minimum=0),
    Setting("OTA_ACCEL_REDIRECT", "accel_redirect", "str", Settings.accel_redirect,
            "internal location prefix a front nginx serves artifacts from (X-Accel-Redirect)"),
    Setting("OTA_GRACE_PERIOD", "grace_period", "float", Settings.grace_period,
            "seconds a stopping worker gives requests in flight", minimum=0),
    Setting("OTA_MIN_TRANSFER_RATE", "min_transfer_rate", "float", Settings.min_transfer_rate,
            "bytes per second a download or upload must average over the window, else it is cut (0: off)",
            minimum=0),
    Setting("OTA_TRANSFER_RATE_WINDOW", "transfer_rate_window", "float", Settings.transfer_rate_window,
            "seconds over which a transfer's rate is averaged", minimum=0.1, maximum=86400),
    Setting("OTA_MAX_INFLIGHT", "max_inflight", "int", Settings.max_inflight,
            "requests a worker handles at once before answering 503", minimum=1),
    Setting("OTA_LOG_LEVEL", "log_level", "choice", Settings.log_level, "log level",
            choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    Setting("OTA_METRICS_TOKEN", "metrics_token", "str", Settings.metrics_token,
            "bearer token /metrics requires (unset: open to whoever reaches it)", secret=True),
    Setting("OTA_METRICS_FLEET_LABELS", "metrics_fleet_labels", "choice", Settings.metrics_fleet_labels,
            "per-organization fleet gauges on /metrics (project, cohort, version labels)", choices=("on", "off")),
    Setting("OTA_TRUSTED_PROXIES", "trusted_proxies", "cidrs", Settings.trusted_proxies,
            "reverse proxies (addresses or CIDRs, comma-separated) whose X-Forwarded-For names the client"),
    Setting("OTA_RETAIN_HISTORY_DAYS", "retain_history_days", "int", Settings.retain_history_days,
            "days of device version history kept (0: forever; a device's newest version always)", minimum=0,
            maximum=36500),
    Setting("OTA_RETAIN_FEEDBACK_DAYS", "retain_feedback_days", "int", Settings.retain_feedback_days,
            "days of DDI feedback kept (0: forever; an open action's always)", minimum=0, maximum=36500),
    Setting("OTA_RETAIN_AUDIT_DAYS", "retain_audit_days", "int", Settings.retain_audit_days,
            "days of audit log kept (0: forever)", minimum=0, maximum=36500),
)

BY_ENV: dict[str, Setting] = {s.env: s for s in TABLE}
BY_FIELD: dict[str, Setting] = {s.field: s for s in TABLE}
# Settings fields that are not read from the environment: tuned in code, or set by the supervisor
NOT_IN_ENV = ("checkin_buffer_max", "last_seen_granularity", "url_ttl", "upload_ttl", "metrics_dir", "bootstrap")


def env_setting(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting (by Settings field name) read through the table, for what is needed before
    the rest (the log level)."""
    return BY_FIELD[name].read(os.environ if environ is None else environ)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The table's flags, as options of `parser` (values checked by `Settings.from_env`)."""
    for s in TABLE:
        if s.flag:
            default = f", default {s.default_text}" if s.default_text else ""
            parser.add_argument(s.flag, dest=s.field, metavar=s.field.upper(), help=f"{s.help} ({s.env}{default})")


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The table's flags given on the command line, as `Settings.from_env` overrides."""
    return {s.field: getattr(args, s.field, None) for s in TABLE if s.flag}

