"""Snapshots: create from a volume, list/show, delete, restore into a new volume on the same host."""

from __future__ import annotations

from typing import Any

from controller.services import storage_views, views
from controller.services import volumes as volume_service
from controller.services.context import RequestContext
from controller.services.errors import ServiceError
from controller.services.runtime import Runtime
from controller.services.scope import owned, target_tenant
from controller.state.data import StateData


def find(data: StateData, tenant_id: str, ident: str) -> dict[str, Any]:
    return owned(data.snapshots, tenant_id, ident, "snapshot", data.snapshot_names)


async def create(rt: Runtime, rc: RequestContext, name: str, volume: str,
                 tenant: str | None) -> tuple[dict[str, Any], bool]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        volume_id = volume_service.find(data, tenant_id, volume)["id"]
    args = {"id": volume_service.new_id("snap"), "tenant_id": tenant_id, "name": name, "volume_id": volume_id}
    out = await rt.propose(rc, "snapshot.create", args, action="snapshot.create", target=name, tenant_id=tenant_id)
    return storage_views.snapshot(out.result), out.replayed


async def list_(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None, tenant: str | None,
                volume: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        volume_id = volume_service.find(data, tenant_id, volume)["id"] if volume is not None else None
        own = {i: data.snapshots[i] for i in data.snapshot_names.get(tenant_id, {}).values() if i in data.snapshots}
        items, nxt = views.page(own, limit, marker, keep=lambda s: volume_id is None or s["volume_id"] == volume_id)
        return {"items": [storage_views.snapshot(s) for s in items], "next_marker": nxt}


async def get(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        return storage_views.snapshot(find(data, tenant_id, ident))


async def delete(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> None:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        snapshot_id = find(data, tenant_id, ident)["id"]
    await rt.propose(rc, "snapshot.delete", {"id": snapshot_id}, action="snapshot.delete", target=ident,
                     tenant_id=tenant_id)


async def restore(rt: Runtime, rc: RequestContext, ident: str, name: str, size_gb: int | None,
                  tenant: str | None) -> tuple[dict[str, Any], bool]:
    """A new volume with the snapshot's content, on the snapshot's host (where its data is)."""
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        snap = find(data, tenant_id, ident)
        if name in data.volume_names.get(tenant_id, {}):
            raise ServiceError(409, "conflict", f"volume {name!r} already exists")
        source = data.volumes.get(snap["volume_id"], {})
        args = {"id": volume_service.new_id("vol"), "tenant_id": tenant_id, "name": name,
                "size_gb": size_gb or snap["size_gb"], "kind": source.get("kind", "filesystem"),
                "host_id": snap["host_id"], "from_snapshot": snap["id"]}
    out = await rt.propose(rc, "volume.create", args, action="snapshot.restore", target=ident, tenant_id=tenant_id)
    with rt.view() as data:
        return storage_views.volume(data, data.volumes.get(args["id"], out.result)), out.replayed
