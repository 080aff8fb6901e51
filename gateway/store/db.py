"""The pool, the schema and NOTIFY."""
from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path

import asyncpg
import orjson

# The schema as numbered migrations, NNNN_name.sql (package data), each applied once, in order.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
NOTIFY_CHANNEL = "ota_gateway"
log = logging.getLogger("ota_gateway")
_LOCK_NS = 0x07A  # advisory-lock namespace for per-project resolution rebuilds


async def init_connection(conn: asyncpg.Connection) -> None:
    """Decode json/jsonb with orjson on every pooled connection."""
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads,
                                  schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's reset query (RESET ALL, UNLISTEN *, CLOSE ALL, advisory
    unlock): one round trip per release, and pooled connections never hold session state (SET
    LOCAL, transaction-scoped advisory locks, cursors inside transactions; LISTEN is on the
    mirror's own connection). asyncpg still rolls back a transaction left open."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    # command_timeout: a write must fail (503) rather than hang when the database stalls
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=init_connection,
                                     reset=_keep_session, command_timeout=30, timeout=5)


def migrations() -> list[tuple[int, str, Path]]:
    """(version, name, path) of every migration shipped, in order; numbered 1..n without gaps."""
    files = sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql"))
    found = [(int(m[1]), m[2], MIGRATIONS_DIR / f) for f in files if (m := _MIGRATION_NAME.fullmatch(f))]
    if len(found) != len(files) or [v for v, _, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations in {MIGRATIONS_DIR} must be named NNNN_lowercase_name.sql and numbered "
                           f"0001, 0002, ... without gaps or duplicates: {files}")
    return found


async def apply_schema(conn: asyncpg.Connection) -> None:
    """Apply every migration the database has not recorded in schema_migrations, in order, each
    in its own transaction together with its row; serialised by an advisory lock so concurrent
    starts (and `ota-gateway migrate`) apply each exactly once. The lock is the one releases
    before numbered migrations took around their schema.sql, so an old gateway starting during
    an upgrade waits too. A database of such a release (its schema_migrations, if any, empty and
    without `name`) gets 0001 (idempotent: the schema it already has) and the rest like any other."""
    await conn.execute("SELECT pg_advisory_lock($1, 0)", _LOCK_NS)
    try:
        # as old releases declared it, then `name`: the same columns, in the same order, either way
        await conn.execute("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version     integer PRIMARY KEY,
                applied_at  timestamptz NOT NULL DEFAULT now()
            );
            ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS name text""")
        applied = {r["version"]: r["name"] for r in await conn.fetch("SELECT version, name FROM schema_migrations")}
        known = migrations()
        for version, name, path in known:
            if version in applied:
                if applied[version] not in (None, name):
                    raise RuntimeError(f"schema_migrations records migration {version} as {applied[version]!r}, "
                                       f"but this release's {version:04d} is {name!r}")
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            log.info("schema migration %04d_%s applied", version, name)
        newer = sorted(v for v in applied if v > len(known))
        if newer:
            log.warning("the database has schema migrations %s this release does not know (a newer release "
                        "migrated it)", newer)
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1, 0)", _LOCK_NS)
        except Exception:  # the session is unusable: ending it releases the lock
            conn.terminate()


async def server_secret(conn: asyncpg.Connection, key: str) -> str:
    """A random server-wide secret, created once and shared by every process."""
    await conn.execute("INSERT INTO server_settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                       key, secrets.token_hex(32))
    return await conn.fetchval("SELECT value FROM server_settings WHERE key = $1", key)


async def notify(conn, message: str) -> None:
    """Tell every gateway process what to reload; delivered at commit."""
    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, message)
