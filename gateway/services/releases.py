"""Releases: listing and lookup by id or version."""
from __future__ import annotations

from .. import store
from ..errors import BadRequest, NotFound
from ..manage_common import iso
from . import Context


def release_json(r: dict, payloads: list[dict] | None = None) -> dict:
    return {
        "id": r["id"], "version": r["version"], "software_type": r["software_type"],
        "delta_from": r["from_version"], "is_delta": r["from_version"] is not None,
        "must_pass_through": r["must_pass_through"], "revision": r["revision"], "notes": r["notes"],
        "extra_info": r["extra_info"], "created_by": r["created_by"],
        "created_date": r["created_at"] if isinstance(r["created_at"], str) else iso(r["created_at"]),
        "updated_date": r["updated_at"] if isinstance(r["updated_at"], str) else iso(r["updated_at"]),
        "artifacts": [{"id": pl["id"], "type": pl["firmware_type"], "hardware_version": pl["hardware_version"],
                       "filename": pl["filename"], "file_size": pl["size"], "md5": pl["md5"], "sha1": pl["sha1"],
                       "sha256": pl["sha256"], "extra_info": pl["extra_info"]} for pl in (payloads or [])],
        **({"active_deployments": r["active_activations"]} if "active_activations" in r else {}),
    }


async def list_releases(ctx: Context, *, version: str | None = None, software_type: str | None = None,
                        revision: str | None = None, hardware_version: str | None = None) -> list[dict]:
    """Releases, newest first, optionally filtered (empty filters match everything)."""
    rows = await store.releases_with_payloads(ctx.pool, ctx.pid)
    return [release_json(r, r["payloads"]) for r in rows
            if (not version or r["version"] == version)
            and (not software_type or r["software_type"] == software_type)
            and (not revision or r["revision"] == revision)
            and (not hardware_version or any(pl["hardware_version"] == hardware_version for pl in r["payloads"]))]


async def release_by_ref(conn, project_id: int, ref: str) -> dict:
    """A release row (with payloads) by numeric id or by version string (unique across software
    types, full releases only)."""
    if ref.isdigit():
        rows = await store.releases_with_payloads(conn, project_id, release_id=int(ref))
    else:
        rows = [r for r in await store.releases_with_payloads(conn, project_id) if r["version"] == ref
                and r["from_version"] is None]
    if not rows:
        raise NotFound(f"release {ref!r} not found")
    if len(rows) > 1:
        raise BadRequest(f"version {ref!r} exists for several software types; use the release id "
                         f"({', '.join(str(r['id']) for r in rows)})")
    return rows[0]


async def get_release(ctx: Context, ref: str) -> dict:
    r = await release_by_ref(ctx.pool, ctx.pid, ref)
    return release_json(r, r["payloads"])


async def software_types(ctx: Context) -> list[str]:
    return [r["name"] for r in await store.list_software_types(ctx.pool, ctx.pid)]
