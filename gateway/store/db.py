"""The pool, the schema and NOTIFY."""
from __future__ import annotations

import secrets
from pathlib import Path

import asyncpg
import orjson



SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema.sql"  # package data
NOTIFY_CHANNEL = "ota_gateway"
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


async def apply_schema(conn: asyncpg.Connection) -> None:
    """Create every table idempotently; serialised so concurrent starts don't race."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", _LOCK_NS)
        await conn.execute(SCHEMA_PATH.read_text())


async def server_secret(conn: asyncpg.Connection, key: str) -> str:
    """A random server-wide secret, created once and shared by every process."""
    await conn.execute("INSERT INTO server_settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                       key, secrets.token_hex(32))
    return await conn.fetchval("SELECT value FROM server_settings WHERE key = $1", key)


async def notify(conn, message: str) -> None:
    """Tell every gateway process what to reload; delivered at commit."""
    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, message)
