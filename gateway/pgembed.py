"""A private PostgreSQL cluster started from the system's binaries (initdb / pg_ctl).

Used when no DATABASE_URL is given, and by the test suite. PostgreSQL refuses to run as root,
so when we are root the cluster runs as an unprivileged system user that owns the data dir.
"""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
from pathlib import Path

from gateway.config import env_setting

INSTALL_HINT = (
    "No PostgreSQL server binaries found (looked for pg_config --bindir and "
    "/usr/lib/postgresql/*/bin). Install them with `apt-get install postgresql` "
    "(Debian/Ubuntu), or `pip install 'ota-gateway[pgserver]'`, or set DATABASE_URL."
)


class PostgresUnavailable(RuntimeError):
    """No way to start a PostgreSQL server on this machine."""


def find_bindir() -> Path | None:
    """Directory holding initdb/pg_ctl/postgres, newest major version first."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))

    def major(p: str) -> int:
        try:
            return int(Path(p).parent.name.split(".")[0])
        except ValueError:
            return 0

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True)]
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_user() -> pwd.struct_passwd | None:
    """The unprivileged account to run PostgreSQL as, creating one if root has none."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "ota-postgres"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "ota-postgres"],
                   check=True)
    return pwd.getpwnam("ota-postgres")


class EmbeddedPostgres:
    """One cluster in `data_dir/pg`, listening on 127.0.0.1 only, password-protected."""

    def __init__(self, data_dir: str | os.PathLike, *, fast: bool = False, dbname: str = "ota"):
        self.data_dir = Path(data_dir).resolve()
        self.pgdata = self.data_dir / "pg"
        self.fast = fast  # fsync off: for throwaway test clusters only
        self.dbname = dbname
        self.port = 0
        self.bindir = find_bindir()
        self.user = _run_user()
        self._started = False

    # -- helpers -----------------------------------------------------------------------------
    def _cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        kwargs: dict = {}
        if self.user is not None:
            kwargs.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        out = subprocess.run(list(args), capture_output=True, text=True, cwd="/", **kwargs)
        if check and out.returncode != 0:
            detail = out.stderr.strip() or out.stdout.strip()
            raise RuntimeError(f"{Path(args[0]).name} failed ({out.returncode}): {detail}")
        return out

    def _chown(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    @property
    def password_file(self) -> Path:
        return self.data_dir / "pg-password"

    def _password(self) -> str:
        if not self.password_file.exists():
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24))
        return self.password_file.read_text().strip()

    @property
    def dsn(self) -> str:
        return f"postgresql://ota:{self._password()}@127.0.0.1:{self.port}/{self.dbname}"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> str:
        """Initialise (first time) and start the cluster; return a DSN for the `ota` database."""
        if self.bindir is None:
            return self._start_pgserver()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o755)  # the server user must reach pgdata inside it
        password = self._password()
        if not (self.pgdata / "PG_VERSION").exists():
            self.pgdata.mkdir(mode=0o700, exist_ok=True)
            self._chown(self.pgdata)
            pwfile = self.data_dir / "pg-initpw"
            pwfile.write_text(password)
            self._chown(pwfile)
            try:
                args = [str(self.bindir / "initdb"), "-D", str(self.pgdata), "-U", "ota", "-E", "UTF8",
                        "--locale=C", "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
                        f"--pwfile={pwfile}"]
                if self.fast:
                    args.append("--no-sync")
                self._cmd(*args)
            finally:
                pwfile.unlink(missing_ok=True)
        self.port = self.port or free_port()  # a restart keeps the port, so clients reconnect
        opts = [f"-p {self.port}", "-c listen_addresses=127.0.0.1", "-c unix_socket_directories=''",
                "-c max_connections=200",
                # the check-in path does random index lookups over the whole fleet: keep it cached
                f"-c shared_buffers={env_setting('pg_shared_buffers')}",
                # check-ins touch random pages of large indexes: after each checkpoint the first change
                # to a page logs the whole page, so checkpoint rarely and compress those images
                "-c max_wal_size=4GB", "-c checkpoint_timeout=15min", "-c wal_compression=on"]
        if self.fast:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        log = self.data_dir / "postgres.log"
        if not log.exists():
            log.touch()
        self._chown(log)
        self._cmd(str(self.bindir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.pgdata),
                  "-l", str(log), "-o", " ".join(opts))
        self._started = True
        try:
            self._ensure_database()
        except BaseException:  # don't leave a server running that nobody will stop
            self.stop()
            raise
        return self.dsn

    def _start_pgserver(self) -> str:
        """Fallback for machines without PostgreSQL binaries: the `pgserver` wheel (optional extra)."""
        try:
            import pgserver
        except ImportError:
            raise PostgresUnavailable(INSTALL_HINT) from None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._pgserver = pgserver.get_server(str(self.data_dir / "pgserver"), cleanup_mode="stop")
        return self._pgserver.get_uri()

    def _ensure_database(self) -> None:
        import asyncio

        import asyncpg

        async def create() -> None:
            conn = await asyncpg.connect(self.dsn.rsplit("/", 1)[0] + "/postgres")
            try:
                exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", self.dbname)
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{self.dbname}"')
            finally:
                await conn.close()

        asyncio.run(create())

    def stop(self) -> None:
        """Fast shutdown (aborts clients, checkpoints); safe to call twice."""
        server = getattr(self, "_pgserver", None)
        if server is not None:
            server.cleanup()
            self._pgserver = None
        if self._started:
            self._cmd(str(self.bindir / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.pgdata), check=False)
            self._started = False

    def __enter__(self) -> "EmbeddedPostgres":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
