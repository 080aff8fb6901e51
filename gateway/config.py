"""Settings from command-line flags, each with an environment variable as fallback."""
from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    return int(v) if v else default


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
    grace_period: float = 10.0               # graceful shutdown
    max_inflight: int = 1024                 # concurrent requests per process before shedding (503)
    accel_redirect: str | None = None        # e.g. /_artifacts/: nginx serves artifact bytes
    listen_mode: str = "shared"              # shared accept queue, or "reuseport" (socket per worker)
    metrics_dir: str | None = None
    bootstrap: dict = field(default_factory=dict)

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def effective_storage_dir(self) -> str:
        return self.storage_dir or os.path.join(self.data_dir, "artifacts")

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Environment first, then explicit (non-None) overrides from flags."""
        s = cls(
            host=os.environ.get("OTA_HOST", cls.host),
            port=_env_int("OTA_PORT", cls.port),
            data_dir=os.environ.get("OTA_DATA_DIR", cls.data_dir),
            workers=_env_int("OTA_WORKERS", os.cpu_count() or 1),
            public_url=os.environ.get("OTA_PUBLIC_URL", ""),
            database_url=os.environ.get("DATABASE_URL") or None,
            storage_dir=os.environ.get("OTA_STORAGE_DIR") or None,
            flush_interval=float(os.environ.get("OTA_FLUSH_INTERVAL", cls.flush_interval)),
            max_upload_size=_env_int("OTA_MAX_UPLOAD_SIZE", cls.max_upload_size),
            grace_period=float(os.environ.get("OTA_GRACE_PERIOD", cls.grace_period)),
            max_inflight=_env_int("OTA_MAX_INFLIGHT", cls.max_inflight),
            ddi_cache_size=_env_int("OTA_DDI_CACHE_SIZE", cls.ddi_cache_size),
            ddi_shared_size=_env_int("OTA_DDI_SHARED_SIZE", cls.ddi_shared_size),
            accel_redirect=os.environ.get("OTA_ACCEL_REDIRECT") or None,
            listen_mode=os.environ.get("OTA_LISTEN_MODE", cls.listen_mode),
            bootstrap={k: os.environ[f"OTA_{k.upper()}"] for k in
                       ("org", "project", "org_token", "project_key", "user_email", "user_secret")
                       if os.environ.get(f"OTA_{k.upper()}")},
        )
        for k, v in overrides.items():
            if v is not None:
                setattr(s, k, v)
        return s
