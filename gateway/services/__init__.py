"""The management service layer: the release model's operations, independent of HTTP.

Every function takes a `Context` (the caller's identity, the project row and the process's
`Resources`) plus plain parameters, returns plain data (the same dicts the REST API serialises)
and raises the errors of `gateway.domain.errors`. Writes run through `changes.write`
(transaction, audit, NOTIFY, refresh) and, where they change what devices get, through
`protect` (protected cohorts, approvals). The REST handlers in `gateway.api.mgmt` and the web
dashboard (`gateway.ui`) are thin adapters over these functions, so both enforce the same roles,
protected cohorts and approvals, and write the same audit entries.
"""
from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gateway.domain.access import Identity
from gateway.domain.errors import NotFound
from gateway.memory.ddi_cache import DeviceCache
from gateway.memory.ddi_loader import StateLoader
from gateway.memory.mirror import Mirror
from gateway.store import projects as projects_store


@dataclass(frozen=True, slots=True)
class Resources:
    """What the use cases need of a gateway process: the database pool, the in-memory mirror
    (what polls are answered from) and the DDI device state cache and loader."""
    pool: asyncpg.Pool
    mirror: Mirror
    ddi_cache: DeviceCache
    ddi_loader: StateLoader


@dataclass(frozen=True, slots=True)
class Context:
    """Who calls, about which project, with which process resources."""
    res: Resources
    ident: Identity
    project: dict

    @property
    def pool(self) -> asyncpg.Pool:
        return self.res.pool

    @property
    def pid(self) -> int:
        return self.project["id"]

    def view(self):
        """This process's mirrored view of the project (what polls are answered from)."""
        view = self.res.mirror.projects.get(self.project["id"])
        if view is None:
            raise NotFound("project is not loaded yet; retry")
        return view

    async def refresh(self, *messages: str) -> None:
        """Read-your-writes: reload this process's mirror now; other processes follow the NOTIFY."""
        await self.res.mirror.apply(set(messages))


@dataclass(slots=True)
class Change:
    """The outcome of a write: its data, and whether it created something or only filed an
    approval request (the REST adapters map these to 201 / 202)."""
    data: dict
    created: bool = False
    pending: bool = False


async def list_projects(res: Resources, ident: Identity) -> list[dict]:
    """The projects of the caller's organization."""
    return [dict(r) for r in await projects_store.list_projects(res.pool, ident.org_id)]


async def project_context(res: Resources, ident: Identity, org: str, slug: str) -> Context:
    """The Context for one of the caller's projects (404 for any other organization or project)."""
    if org != ident.org_slug:
        raise NotFound(f"organization {org!r} not found")
    project = await projects_store.project_by_slugs(res.pool, ident.org_slug, slug)
    if project is None:
        raise NotFound(f"project {slug!r} not found")
    return Context(res, ident, dict(project))
