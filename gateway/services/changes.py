"""The one way a management write runs: a transaction, its audit entry, the NOTIFY that tells
every gateway process what to reload (sent inside the transaction, so it goes out exactly when
the write commits) and, after the commit, this process's own reload (read-your-writes).

    async with changes.write(ctx) as tx:
        ...SQL through gateway.store with tx.conn...
        await tx.audit("device.move", f"device:{serial}", before, after)
        await tx.changed(notify.device(ctx.pid, serial))

A write that changes what devices get rebuilds the resolution cache with `tx.rebuild()`.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gateway.domain import notify
from gateway.store import db as db_store
from gateway.store import insight as insight_store
from gateway.store import resolution as resolution_store


class Tx:
    """A write in progress: its connection, and what it changed."""

    def __init__(self, ctx, conn, actor: str | None = None):
        self.ctx = ctx
        self.conn = conn
        self.actor = actor or ctx.ident.actor
        self.messages: list[str] = []

    def acting_as(self, actor: str) -> "Tx":
        """The same write, recorded as done by `actor` (an approved request: the requester,
        approved by the caller); what it changes is reloaded with this write's."""
        tx = Tx(self.ctx, self.conn, actor)
        tx.messages = self.messages
        return tx

    async def audit(self, action: str, obj: str, before: Any = None, after: Any = None, *,
                    project: bool = True) -> None:
        """Append to the audit log (`project=False` for organization-level entries)."""
        await insight_store.audit(self.conn, self.ctx.pid if project else None, self.actor, action, obj,
                                  before, after)

    async def changed(self, *messages: str) -> None:
        """NOTIFY every process (on commit) and remember to reload this one after it."""
        for m in messages:
            if m not in self.messages:
                await db_store.notify(self.conn, m)
                self.messages.append(m)

    async def rebuild(self) -> None:
        """Recompute the project's resolution tables inside this transaction (the store announces
        them to every process) and reload them here after the commit."""
        await resolution_store.rebuild_resolution(self.conn, self.ctx.pid)
        if (m := notify.project(self.ctx.pid)) not in self.messages:
            self.messages.append(m)


@asynccontextmanager
async def write(ctx, *, actor: str | None = None) -> AsyncIterator[Tx]:
    """Run a write in one transaction; after it commits, reload this process's mirror for what
    it changed. Nothing is announced when the write fails (the NOTIFY rolls back with it)."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        tx = Tx(ctx, conn, actor)
        yield tx
    if tx.messages:
        await ctx.refresh(*tx.messages)


@asynccontextmanager
async def rehearsal(ctx) -> AsyncIterator[Tx]:
    """A write that is always rolled back (a preview): nothing it does is kept or announced."""
    async with ctx.pool.acquire() as conn:
        tr = conn.transaction()
        await tr.start()
        try:
            yield Tx(ctx, conn)
        finally:
            await tr.rollback()
