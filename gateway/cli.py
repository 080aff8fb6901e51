"""`ota-gateway` command line: `serve` runs the gateway (workers, embedded PostgreSQL)."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import select
import signal
import socket
import sys
import tempfile
import time

from gateway import __version__, client
from gateway.config import Settings, SettingsError, add_flags, env_setting, flag_values
from gateway.crypto.tokens import hash_user_secret
from gateway.domain import notify
from gateway.memory import ddi_shared, seen
from gateway.pgembed import EmbeddedPostgres, PostgresUnavailable
from gateway.store import bootstrap as bootstrap_store
from gateway.store import db as db_store

log = logging.getLogger("ota_gateway")


async def prepare_database(settings: Settings) -> None:
    """Apply the pending schema migrations and create the bootstrap org/project/token/key (idempotent)."""
    import asyncpg

    conn = await asyncpg.connect(settings.database_url)
    try:
        await db_store.apply_schema(conn)
        b = settings.bootstrap
        if b.get("org"):
            async with conn.transaction():
                org_id = await bootstrap_store.ensure_org(conn, b["org"])
                if b.get("project"):
                    project_id = await bootstrap_store.ensure_project(conn, org_id, b["project"])
                    if b.get("project_key"):
                        await bootstrap_store.ensure_project_key(conn, project_id, b["project_key"])
                    await db_store.notify(conn, notify.project(project_id))
                if b.get("org_token"):
                    await bootstrap_store.ensure_org_token(conn, org_id, b["org_token"])
                if b.get("user_email") and b.get("user_secret"):
                    await bootstrap_store.ensure_user(conn, org_id, b["user_email"], hash_user_secret(b["user_secret"]),
                                            "manager")
    finally:
        await conn.close()


def _bind(settings: Settings, *, reuseport: bool) -> socket.socket:
    """A listening socket on the gateway's address (SO_REUSEPORT only for the per-worker sockets
    of `reuseport` mode, which the supervisor binds itself: no other process can join them)."""
    info = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart past TIME_WAIT, not a listener
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(info[4])
        sock.listen(4096)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def listen_sockets(settings: Settings) -> dict[int, socket.socket]:
    """The socket each worker slot accepts on, bound by the supervisor and kept open by it until the
    gateway stops (SIGTERM), so connections queued to a slot survive its worker being replaced.

    `shared` (default): one accept queue for every worker. `reuseport`: a socket per slot, the
    kernel spreads connections over them; the replacement of a worker inherits its slot's socket
    and accepts what queued meanwhile, with default kernel settings. Either way a port another
    process listens on is refused: first bound without SO_REUSEPORT, as a probe."""
    probe = _bind(settings, reuseport=False)  # fails if anyone (even with SO_REUSEPORT) listens
    if settings.listen_mode == "shared":
        return {slot: probe for slot in range(settings.workers)}
    probe.close()
    return {slot: _bind(settings, reuseport=True) for slot in range(settings.workers)}


def _run_worker(settings: Settings, *, sock: socket.socket | None = None, ready_fd: int | None = None) -> None:
    from aiohttp import web

    from gateway.app import init_app

    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass

    def ready(*_args) -> None:  # run_app "prints" once the site listens: tell the supervisor
        if ready_fd is not None:
            with contextlib.suppress(OSError):  # nobody waiting: the read end is closed
                os.write(ready_fd, b"1")
            with contextlib.suppress(OSError):
                os.close(ready_fd)

    try:
        target = {"sock": sock} if sock is not None else {"host": settings.host, "port": settings.port}
        # access_log=None: no access log. A line per device poll would cost more than the poll, and
        # the raw poll answers (gateway/http/rawresponse.py) carry nothing aiohttp's AccessLogger
        # could read; rawresponse.answer falls back to web.Response on a connection that logs.
        web.run_app(init_app(settings), **target, access_log=None, print=ready,
                    shutdown_timeout=settings.grace_period, handle_signals=True)
    except (web.GracefulExit, KeyboardInterrupt):
        pass


class Supervisor:
    """Fork N workers sharing one listening socket; respawn any that die; on SIGHUP replace them
    one at a time (a new worker is accepting before an old one is told to stop)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        # bound here, before any worker, and closed only when the gateway stops (listen_sockets)
        self.socks = listen_sockets(settings)
        # the check-in written state, shared by every worker forked from here (and their successors)
        seen.share()
        # quiet DDI device states, likewise: loaded once per host, not once per worker
        ddi_shared.share(settings.ddi_shared_size)
        self.children: dict[int, int] = {}  # pid -> slot
        self.started: dict[int, float] = {}  # pid -> monotonic start time
        self.backoff = 0.2
        self.stopping = False
        self.reload = False

    def spawn(self, slot: int, *, wait_ready: bool = False) -> int:
        if not self.children:
            # no worker listened for changes since the last one stopped: the DDI states the workers
            # share may be stale (a worker alongside, as in a rolling restart, keeps them current)
            ddi_shared.forget()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            for other in set(self.socks.values()) - {self.socks[slot]}:
                other.close()  # another slot's socket (reuseport): only the supervisor keeps it
            code = 0
            try:
                _run_worker(self.settings, sock=self.socks[slot], ready_fd=w)
            except BaseException:
                log.exception("worker failed")
                code = 1
            os._exit(code)
        os.close(w)
        self.children[pid] = slot
        self.started[pid] = time.monotonic()
        if wait_ready:
            ready, _, _ = select.select([r], [], [], 120)
            if not ready or not os.read(r, 1):
                log.error("new worker %d did not become ready", pid)
        os.close(r)
        return pid

    def _signal(self, signum, _frame) -> None:
        if signum == signal.SIGHUP:
            self.reload = True
            return
        self.stopping = True
        self.close_sockets()  # new connections are refused at once, not queued to stopping workers
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def close_sockets(self) -> None:
        """Stop listening (the workers close their copies as they begin to stop): with every copy
        closed the kernel refuses a new connection instead of queueing it for nobody."""
        for sock in set(self.socks.values()):
            sock.close()

    def _rolling_restart(self) -> None:
        log.info("graceful restart: replacing %d worker(s)", len(self.children))
        for old, slot in list(self.children.items()):
            if self.stopping:
                return
            self.spawn(slot, wait_ready=True)
            self.children.pop(old, None)
            with contextlib.suppress(ProcessLookupError):
                os.kill(old, signal.SIGTERM)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(old, 0)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._signal)
        for slot in range(self.settings.workers):
            self.spawn(slot)
        while self.children:
            if self.reload and not self.stopping:
                self.reload = False
                self._rolling_restart()
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.1)
                continue
            slot = self.children.pop(pid, None)
            lived = time.monotonic() - self.started.pop(pid, 0.0)
            if slot is not None and not self.stopping:
                # a worker that dies young is crash-looping: back off instead of spinning
                self.backoff = 0.2 if lived > 10 else min(self.backoff * 2, 10.0)
                log.warning("worker %d exited (%s) after %.1fs; restarting in %.1fs", pid,
                            os.waitstatus_to_exitcode(status), lived, self.backoff)
                time.sleep(self.backoff)
                self.spawn(slot)
        return 0


def serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env(**flag_values(args))
    pg = None
    if not settings.database_url:
        pg = EmbeddedPostgres(settings.data_dir)
        try:
            settings.database_url = pg.start()
        except PostgresUnavailable as e:
            print(f"ota-gateway: {e}", file=sys.stderr)
            return 2
        log.info("embedded PostgreSQL running from %s", pg.pgdata)
    try:
        asyncio.run(prepare_database(settings))
        with tempfile.TemporaryDirectory(prefix="ota-metrics-") as mdir:
            settings.metrics_dir = mdir
            try:
                supervisor = Supervisor(settings)
            except OSError as e:
                print(f"ota-gateway: cannot listen on {settings.host}:{settings.port}: {e.strerror} "
                      "(is another gateway or program using the port?)", file=sys.stderr)
                return 2
            print(f"ota-gateway {__version__} listening on http://{settings.host}:{settings.port} "
                  f"(public URL {settings.effective_public_url}, {settings.workers} worker(s), "
                  f"{settings.listen_mode})", flush=True)
            supervisor.run()
    finally:
        if pg is not None:
            pg.stop()
    return 0


def migrate(args: argparse.Namespace) -> int:
    """Apply the pending schema migrations (and the bootstrap from OTA_* variables) to DATABASE_URL, then exit:
    the Kubernetes migration Job runs this before gateways roll."""
    settings = Settings.from_env()
    if not settings.database_url:
        print("ota-gateway migrate: DATABASE_URL is required", file=sys.stderr)
        return 2
    asyncio.run(prepare_database(settings))
    print("schema applied", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        level = env_setting("log_level")  # through config.TABLE, like every setting
    except SettingsError as e:
        print(f"ota-gateway: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="ota-gateway", description="Self-hostable OTA update server")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the gateway")
    add_flags(s)  # --host, --port, ... from config.TABLE
    s.set_defaults(func=serve)
    sub.add_parser("migrate", help="apply the schema to DATABASE_URL and exit").set_defaults(func=migrate)
    client.register(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as e:  # a bad OTA_* value or flag: one line naming it, not a traceback
        print(f"ota-gateway: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
