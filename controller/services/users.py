"""Users of a tenant; only admins manage them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from controller.security.passwords import hash_password
from controller.services import views
from controller.services.context import RequestContext
from controller.services.errors import not_found
from controller.services.runtime import Runtime
from controller.services.scope import check_all_tenants, target_tenant, visible
from controller.state.users import find_user


async def create(rt: Runtime, rc: RequestContext, name: str, role: str, password: str | None,
                 tenant: str | None) -> tuple[dict[str, Any], bool]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
    password_hash = await asyncio.to_thread(hash_password, password) if password else None
    args = {"id": uuid.uuid4().hex, "name": name, "tenant_id": tenant_id, "role": role,
            "password_hash": password_hash}
    out = await rt.propose(rc, "user.create", args, action="user.create", target=name, tenant_id=tenant_id)
    return views.user(out.result), out.replayed


async def list_(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None,
                tenant: str | None, all_tenants: bool) -> dict[str, Any]:
    check_all_tenants(rc.caller, all_tenants)
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = None if all_tenants else target_tenant(data, rc.caller, tenant)["id"]
        items, nxt = views.page(data.users, limit, marker,
                                keep=lambda u: tenant_id is None or u["tenant_id"] == tenant_id)
        return {"items": [views.user(u) for u in items], "next_marker": nxt}


def visible_user(rt: Runtime, rc: RequestContext, ident: str) -> dict[str, Any]:
    with rt.view() as data:
        user = find_user(data, ident)
        if user is None or not visible(rc.caller, user["tenant_id"]):
            raise not_found("user", ident)
        return dict(user)


async def get(rt: Runtime, rc: RequestContext, ident: str) -> dict[str, Any]:
    await rt.consistent(rc)
    return views.user(visible_user(rt, rc, ident))


async def update(rt: Runtime, rc: RequestContext, ident: str, changes: dict[str, Any]) -> dict[str, Any]:
    await rt.consistent(rc)
    user = visible_user(rt, rc, ident)
    if "password" in changes:
        password = changes.pop("password")
        changes["password_hash"] = await asyncio.to_thread(hash_password, password) if password else None
    out = await rt.propose(rc, "user.update", {"user_id": user["id"], "changes": changes}, action="user.update",
                           target=user["name"], tenant_id=user["tenant_id"])
    return views.user(out.result)


async def delete(rt: Runtime, rc: RequestContext, ident: str) -> None:
    await rt.consistent(rc)
    user = visible_user(rt, rc, ident)
    await rt.propose(rc, "user.delete", {"user_id": user["id"]}, action="user.delete", target=user["name"],
                     tenant_id=user["tenant_id"])
