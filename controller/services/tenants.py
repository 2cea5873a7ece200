"""Tenants and their quotas."""

from __future__ import annotations

import uuid
from typing import Any

from controller.services import views
from controller.services.context import RequestContext
from controller.services.errors import not_found
from controller.services.runtime import Runtime
from controller.services.scope import target_tenant, visible
from controller.state.quotas import quota_view
from controller.state.tenants import find_tenant


async def create(rt: Runtime, rc: RequestContext, name: str, description: str) -> tuple[dict[str, Any], bool]:
    out = await rt.propose(rc, "tenant.create", {"id": uuid.uuid4().hex, "name": name, "description": description},
                           action="tenant.create", target=name, tenant_id=None)
    return views.tenant(out.result), out.replayed


async def list_(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        items, nxt = views.page(data.tenants, limit, marker, keep=lambda t: visible(rc.caller, t["id"]))
        return {"items": [views.tenant(t) for t in items], "next_marker": nxt}


def _visible_tenant(rt: Runtime, rc: RequestContext, ident: str) -> dict[str, Any]:
    with rt.view() as data:
        tenant = find_tenant(data, ident)
        if tenant is None or not visible(rc.caller, tenant["id"]):
            raise not_found("tenant", ident)
        return dict(tenant)


async def get(rt: Runtime, rc: RequestContext, ident: str) -> dict[str, Any]:
    await rt.consistent(rc)
    return views.tenant(_visible_tenant(rt, rc, ident))


async def delete(rt: Runtime, rc: RequestContext, ident: str) -> None:
    await rt.consistent(rc)
    tenant = _visible_tenant(rt, rc, ident)
    await rt.propose(rc, "tenant.delete", {"tenant_id": tenant["id"]}, action="tenant.delete",
                     target=tenant["name"], tenant_id=tenant["id"])


async def get_quota(rt: Runtime, rc: RequestContext, ident: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    if ident is not None:
        tenant_id = _visible_tenant(rt, rc, ident)["id"]
        with rt.view() as data:
            return quota_view(data, tenant_id)
    with rt.view() as data:
        return quota_view(data, target_tenant(data, rc.caller, None)["id"])


async def set_quota(rt: Runtime, rc: RequestContext, ident: str, limits: dict[str, int]) -> dict[str, Any]:
    await rt.consistent(rc)
    tenant = _visible_tenant(rt, rc, ident)
    out = await rt.propose(rc, "quota.set", {"tenant_id": tenant["id"], "limits": limits}, action="quota.set",
                           target=tenant["name"], tenant_id=tenant["id"])
    result: dict[str, Any] = out.result
    return result
