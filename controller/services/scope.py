"""Tenant scoping: callers act in their own tenant; only the cluster admin may name another."""

from __future__ import annotations

from typing import Any

from controller.services.context import Caller
from controller.services.errors import ServiceError, forbidden, not_found
from controller.state.data import StateData
from controller.state.tenants import find_tenant


def target_tenant(data: StateData, caller: Caller, requested: str | None) -> dict[str, Any]:
    """The tenant a request acts in. Non-admins naming a foreign tenant get 403 (existence not revealed)."""
    if requested is None or requested in (caller.tenant_id, caller.tenant_name):
        tenant = data.tenants.get(caller.tenant_id)
        if tenant is None:
            raise ServiceError(401, "unauthorized", "your tenant no longer exists")
        return tenant
    if not caller.is_cluster_admin:
        raise forbidden("you may only act in your own tenant")
    tenant = find_tenant(data, requested)
    if tenant is None:
        raise not_found("tenant", requested)
    return tenant


def check_all_tenants(caller: Caller, all_tenants: bool) -> None:
    if all_tenants and not caller.is_cluster_admin:
        raise forbidden("all_tenants=true is reserved to the cluster admin")


def visible(caller: Caller, tenant_id: str) -> bool:
    return caller.is_cluster_admin or tenant_id == caller.tenant_id


def owned(records: dict[str, dict[str, Any]], tenant_id: str, ident: str, kind: str,
          names: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """A tenant's record by id, or by name when ``names`` (tenant -> name -> id) is given. Another tenant's
    record is simply not found (404), so ids and names of other tenants leak nothing."""
    record = records.get(ident)
    if (record is None or record["tenant_id"] != tenant_id) and names is not None:
        record = records.get(names.get(tenant_id, {}).get(ident, ""))
    if record is None or record["tenant_id"] != tenant_id:
        raise not_found(kind, ident)
    return record
