"""The management service layer: the release model's operations, independent of HTTP.

Every function takes a `Context` (the caller's identity, the project row and the process's
resources) plus plain parameters, returns plain data (the same dicts the REST API serialises)
and raises the errors of `gateway.errors`. The REST handlers in `manage*.py` and the web
dashboard (`gateway.ui`) are thin adapters over these functions, so both enforce the same
roles, protected cohorts and approvals, and write the same audit entries.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from gateway.appkeys import MIRROR, POOL
from gateway.domain.errors import NotFound
from gateway.domain.access import Identity
from gateway.store import projects as projects_store


@dataclass(frozen=True, slots=True)
class Context:
    """Who calls, about which project, with which process resources (pool, mirror, DDI cache)."""
    app: web.Application
    ident: Identity
    project: dict

    @property
    def pool(self):
        return self.app[POOL]

    @property
    def pid(self) -> int:
        return self.project["id"]

    def view(self):
        """This process's mirrored view of the project (what polls are answered from)."""
        view = self.app[MIRROR].projects.get(self.project["id"])
        if view is None:
            raise NotFound("project is not loaded yet; retry")
        return view

    @asynccontextmanager
    async def transaction(self):
        """A pooled connection inside a transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def refresh(self, *messages: str) -> None:
        """Read-your-writes: reload this process's mirror now; other processes follow the NOTIFY
        (the same as manage_common.refresh, which takes a request)."""
        await self.app[MIRROR].apply(set(messages))


@dataclass(slots=True)
class Change:
    """The outcome of a write: its data, and whether it created something or only filed an
    approval request (the REST adapters map these to 201 / 202); `messages` are what this
    process's mirror reloads after the commit (read-your-writes)."""
    data: dict
    created: bool = False
    pending: bool = False
    messages: tuple[str, ...] = ()


async def list_projects(app: web.Application, ident: Identity) -> list[dict]:
    """The projects of the caller's organization."""
    return [dict(r) for r in await projects_store.list_projects(app[POOL], ident.org_id)]


async def project_context(app: web.Application, ident: Identity, slug: str) -> Context:
    """The Context for one of the caller's projects (404 for any other, as in the API)."""
    project = await projects_store.project_by_slugs(app[POOL], ident.org_slug, slug)
    if project is None:
        raise NotFound(f"project {slug!r} not found")
    return Context(app, ident, dict(project))
