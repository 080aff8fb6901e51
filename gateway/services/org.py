"""Organization administration: org API tokens and users with viewer / editor / manager roles
(manager only). Secrets are stored hashed and returned once, by the call that creates them."""
from __future__ import annotations

from gateway.crypto.tokens import hash_token, hash_user_secret
from gateway.domain.access import Identity
from gateway.domain.errors import Conflict, NotFound
from gateway.domain.fields import iso
from gateway.services import Context, Resources, changes
from gateway.store import access as access_store


def org_context(res: Resources, ident: Identity) -> Context:
    """A Context for organization-level use cases (no project)."""
    ident.require("manager")
    return Context(res, ident, {"id": None, "slug": None})


async def list_tokens(ctx: Context) -> list[dict]:
    rows = await access_store.list_tokens(ctx.pool, ctx.ident.org_id)
    return [{"id": r["id"], "name": r["name"], "role": r["role"], "can_activate_protected": r["can_activate_protected"],
             "created_date": iso(r["created_at"]), "revoked_date": iso(r["revoked_at"])} for r in rows]


async def create_token(ctx: Context, name: str, role: str, can_activate_protected: bool, token: str) -> dict:
    """Store a new org token (hashed); the caller shows `token` once."""
    async with changes.write(ctx) as tx:
        tid = await access_store.create_token(tx.conn, ctx.ident.org_id, name, hash_token(token), role,
                                              can_activate_protected)
        await tx.audit("token.create", f"token:{tid}", None,
                       {"name": name, "role": role, "can_activate_protected": can_activate_protected}, project=False)
    return {"id": tid, "name": name, "role": role, "can_activate_protected": can_activate_protected, "token": token}


async def revoke_token(ctx: Context, token_id: int) -> None:
    async with changes.write(ctx) as tx:
        if not await access_store.revoke_token(tx.conn, ctx.ident.org_id, token_id):
            raise NotFound(f"token {token_id} not found or already revoked")
        await tx.audit("token.revoke", f"token:{token_id}", None, None, project=False)


async def list_users(ctx: Context) -> list[dict]:
    rows = await access_store.list_users(ctx.pool, ctx.ident.org_id)
    return [{"id": r["id"], "email": r["email"], "role": r["role"], "created_date": iso(r["created_at"])}
            for r in rows]


async def create_user(ctx: Context, email: str, role: str, secret: str) -> int:
    """A user who logs in with `email` and `secret` (stored hashed); returns its id."""
    async with changes.write(ctx) as tx:
        uid = await access_store.create_user(tx.conn, ctx.ident.org_id, email, hash_user_secret(secret), role)
        if uid is None:
            raise Conflict(f"user {email} already exists")
        await tx.audit("user.create", f"user:{email}", None, {"role": role}, project=False)
    return uid
