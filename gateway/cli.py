"""`ota-gateway` command line: `serve` runs the gateway (workers, embedded PostgreSQL)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
import time

from . import __version__, cli_client, store
from .config import Settings
from .pgembed import EmbeddedPostgres, PostgresUnavailable
from .tokens import hash_user_secret

log = logging.getLogger("ota_gateway")


async def prepare_database(settings: Settings) -> None:
    """Apply schema.sql and create the bootstrap org/project/token/key (idempotent)."""
    import asyncpg

    conn = await asyncpg.connect(settings.database_url)
    try:
        await store.apply_schema(conn)
        b = settings.bootstrap
        if b.get("org"):
            async with conn.transaction():
                org_id = await store.ensure_org(conn, b["org"])
                if b.get("project"):
                    project_id = await store.ensure_project(conn, org_id, b["project"])
                    if b.get("project_key"):
                        await store.ensure_project_key(conn, project_id, b["project_key"])
                    await store.notify(conn, f"project:{project_id}")
                if b.get("org_token"):
                    await store.ensure_org_token(conn, org_id, b["org_token"])
                if b.get("user_email") and b.get("user_secret"):
                    await store.ensure_user(conn, org_id, b["user_email"], hash_user_secret(b["user_secret"]),
                                            "manager")
    finally:
        await conn.close()


def _run_worker(settings: Settings, *, reuse_port: bool) -> None:
    from aiohttp import web

    from .app import init_app

    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    try:
        web.run_app(init_app(settings), host=settings.host, port=settings.port, reuse_port=reuse_port,
                    access_log=None, print=None, shutdown_timeout=settings.grace_period, handle_signals=True)
    except (web.GracefulExit, KeyboardInterrupt):
        pass


def _supervise(settings: Settings) -> int:
    """Fork N workers sharing the port through SO_REUSEPORT; respawn any that die."""
    children: dict[int, int] = {}
    stopping = False

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                _run_worker(settings, reuse_port=True)
            except BaseException:
                log.exception("worker failed")
                code = 1
            os._exit(code)
        children[pid] = slot

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(settings.workers):
        spawn(slot)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        slot = children.pop(pid, None)
        if slot is not None and not stopping:
            log.warning("worker %d exited (%s); restarting", pid, os.waitstatus_to_exitcode(status))
            time.sleep(0.2)
            spawn(slot)
    return 0


def serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env(host=args.host, port=args.port, data_dir=args.data_dir, workers=args.workers,
                                 public_url=args.public_url)
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
        print(f"ota-gateway {__version__} listening on http://{settings.host}:{settings.port} "
              f"(public URL {settings.effective_public_url}, {settings.workers} worker(s))", flush=True)
        if settings.workers <= 1:
            _run_worker(settings, reuse_port=False)
        else:
            with tempfile.TemporaryDirectory(prefix="ota-metrics-") as mdir:
                settings.metrics_dir = mdir
                _supervise(settings)
    finally:
        if pg is not None:
            pg.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("OTA_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="ota-gateway", description="Self-hostable OTA update server")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--host", help="bind address (OTA_HOST, default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (OTA_PORT, default 8080)")
    s.add_argument("--data-dir", help="embedded PostgreSQL and artifacts (OTA_DATA_DIR, default ./.ota-data)")
    s.add_argument("--workers", type=int, help="worker processes (OTA_WORKERS, default: CPU count)")
    s.add_argument("--public-url", help="base of every URL handed to devices (OTA_PUBLIC_URL)")
    s.set_defaults(func=serve)
    cli_client.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
