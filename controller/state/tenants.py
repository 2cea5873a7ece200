"""Tenants: the isolation boundary for every tenant-scoped resource."""

from __future__ import annotations

from typing import Any

from controller.state import tenant_contents
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
    """Refused (409, naming what remains) while the tenant holds anything; checked here in apply."""
    tenant = find_tenant(data, args["tenant_id"])
    if tenant is None:
        raise not_found("tenant", args["tenant_id"])
    if tenant["name"] == DEFAULT_TENANT:
        raise invalid("the default tenant cannot be deleted")
    found = tenant_contents.contents(data, tenant["id"])
    if found.blocking():
        raise conflict(f"tenant {tenant['name']!r} still has {found.describe()}: delete them first")
    tenant_contents.purge_rest(data, tenant["id"], found, ctx)
    del data.tenants[tenant["id"]]
    del data.tenant_names[tenant["name"]]
