"""Reading the audit trail, with filters; tenant admins see their tenant, the cluster admin sees all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controller.services import views
from controller.services.context import RequestContext
from controller.services.runtime import Runtime
from controller.services.scope import target_tenant, visible
from controller.services.views import DEFAULT_LIMIT, MAX_LIMIT


def record_filter(rc: RequestContext, filters: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """``filters['tenant_id']`` (already resolved and scope-checked) narrows to one tenant."""
    tenant_id = filters.get("tenant_id")

    def keep(record: dict[str, Any]) -> bool:
        if tenant_id is not None and record["tenant_id"] != tenant_id:
            return False
        if record["tenant_id"] is None:
            if not rc.caller.is_cluster_admin:
                return False
        elif not visible(rc.caller, record["tenant_id"]):
            return False
        for name in ("actor", "action", "outcome", "target"):
            if filters.get(name) is not None and record[name] != filters[name]:
                return False
        if filters.get("since") is not None and record["time"] < filters["since"]:
            return False
        return not (filters.get("until") is not None and record["time"] > filters["until"])

    return keep


def resolve_tenant(rt: Runtime, rc: RequestContext, tenant: str | None) -> str | None:
    """The tenant id a ``?tenant=`` filter names (the cluster admin may name any; others only their own)."""
    if tenant is None:
        return None
    with rt.view() as data:
        tenant_id: str = target_tenant(data, rc.caller, tenant)["id"]
        return tenant_id


async def list_(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None,
                filters: dict[str, Any]) -> dict[str, Any]:
    await rt.consistent(rc)
    size = min(max(limit or DEFAULT_LIMIT, 1), MAX_LIMIT)
    keep = record_filter(rc, filters)
    after = int(marker) if marker and marker.isdigit() else 0
    items: list[dict[str, Any]] = []
    with rt.view() as data:
        records = data.audit
        # ids are consecutive (trimming only drops the oldest), so the marker maps to an index
        start = max(0, after - records[0]["id"] + 1) if records and after else 0
        for record in records[start:]:
            if not keep(record):
                continue
            if len(items) == size:
                return {"items": items, "next_marker": items[-1]["id"]}
            items.append(views.audit_record(record))
    return {"items": items, "next_marker": None}


def records_after(rt: Runtime, rc: RequestContext, after: int, filters: dict[str, Any]) -> list[dict[str, Any]]:
    keep = record_filter(rc, filters)
    with rt.view() as data:
        return [views.audit_record(r) for r in data.audit if r["id"] > after and keep(r)]
