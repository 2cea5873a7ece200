"""Tenants: the isolation boundary for every tenant-scoped resource."""

from __future__ import annotations

from typing import Any

from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import conflict, invalid, not_found
from controller.state.registry import handles

DEFAULT_TENANT = "default"


def find_tenant(data: StateData, ident: str) -> dict[str, Any] | None:
    tenant = data.tenants.get(ident)
    if tenant is None and ident in data.tenant_names:
        tenant = data.tenants[data.tenant_names[ident]]
    return tenant


def insert_tenant(data: StateData, tenant_id: str, name: str, description: str, now: float) -> dict[str, Any]:
    if name in data.tenant_names:
        raise conflict(f"tenant {name!r} already exists")
    if tenant_id in data.tenants:
        raise conflict(f"tenant id {tenant_id!r} already exists")
    tenant = {"id": tenant_id, "name": name, "description": description, "created_at": now}
    data.tenants[tenant_id] = tenant
    data.tenant_names[name] = tenant_id
    return tenant


@handles("tenant.create")
def create_tenant(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    return insert_tenant(data, args["id"], args["name"], args.get("description", ""), ctx["time"])


@handles("tenant.delete")
def delete_tenant(data: StateData, args: dict[str, Any], ctx: CommandContext) -> None:
    tenant = find_tenant(data, args["tenant_id"])
    if tenant is None:
        raise not_found("tenant", args["tenant_id"])
    if tenant["name"] == DEFAULT_TENANT:
        raise invalid("the default tenant cannot be deleted")
    users = [u["name"] for u in data.users.values() if u["tenant_id"] == tenant["id"]]
    if users:
        raise conflict(f"tenant {tenant['name']!r} still has {len(users)} user(s): delete them first")
    if data.secrets.get(tenant["id"]):
        raise conflict(f"tenant {tenant['name']!r} still has secrets: delete them first")
    del data.tenants[tenant["id"]]
    del data.tenant_names[tenant["name"]]
    data.quotas.pop(tenant["id"], None)
    data.usage.pop(tenant["id"], None)
    data.secrets.pop(tenant["id"], None)
