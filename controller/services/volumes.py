"""Volumes: placement on a storaged host (re-checked in apply), list/show, resize, delete, attach and detach."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from controller.services import storage_views, views
from controller.services.context import RequestContext
from controller.services.errors import ServiceError
from controller.services.runtime import Runtime
from controller.services.scope import owned, target_tenant
from controller.state import storage
from controller.state.data import StateData

PLACEMENT_ATTEMPTS = 3


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def find(data: StateData, tenant_id: str, ident: str) -> dict[str, Any]:
    return owned(data.volumes, tenant_id, ident, "volume", data.volume_names)


def _instance(data: StateData, tenant_id: str, ident: str) -> dict[str, Any]:
    return owned(data.instances, tenant_id, ident, "instance", data.instance_names)


def choose_host(data: StateData, size_gb: int, zone: str | None, backend: str | None) -> str:
    """The storaged host with the most room that fits; 409 ``no_storage_host`` saying why none does."""
    if not data.storage_hosts:
        raise ServiceError(409, "no_storage_host", "no storage host: no host runs thecloud-storaged yet")
    rejected: Counter[str] = Counter()
    best: tuple[int, str] | None = None
    for host_id, record in data.storage_hosts.items():
        host = data.hosts.get(host_id)
        if storage.unusable_reason(data, host_id) is not None or host is None:
            rejected["unavailable"] += 1
        elif zone is not None and host["zone"] != zone:
            rejected["in another zone"] += 1
        elif backend is not None and record["backend"] != backend:
            rejected["another backend"] += 1
        elif storage.room_of(record) < size_gb:
            rejected["lacked space"] += 1
        elif best is None or (storage.room_of(record), host_id) > best:
            best = (storage.room_of(record), host_id)
    if best is None:
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(rejected.items()))
        raise ServiceError(409, "no_storage_host", f"no storage host fits {size_gb} GB among "
                                                   f"{len(data.storage_hosts)}: {why}")
    return best[1]


def _with_backup(data: StateData, tenant_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """A restore from a backup: any storage host with room will do; the kind is the backup's."""
    if not body.get("from_backup"):
        return {k: v for k, v in body.items() if k != "from_backup"}
    backup = owned(data.backups, tenant_id, body["from_backup"], "backup")
    if body["size_gb"] < backup["size_gb"]:
        raise ServiceError(400, "bad_request", f"a volume restored from backup {backup['id']} needs at least "
                                               f"{backup['size_gb']} GB")
    return {**body, "kind": backup["kind"]}


async def create(rt: Runtime, rc: RequestContext, body: dict[str, Any],
                 tenant: str | None) -> tuple[dict[str, Any], bool]:
    await rt.consistent(rc)
    volume_id = new_id("vol")
    last = ""
    for _ in range(PLACEMENT_ATTEMPTS):
        with rt.view() as data:
            tenant_id = target_tenant(data, rc.caller, tenant)["id"]
            if body["name"] in data.volume_names.get(tenant_id, {}):
                raise ServiceError(409, "conflict", f"volume {body['name']!r} already exists")
            body = _with_backup(data, tenant_id, body)
            host_id = choose_host(data, body["size_gb"], body.get("zone"), body.get("backend"))
        args = {**body, "id": volume_id, "tenant_id": tenant_id, "host_id": host_id}
        try:
            out = await rt.propose(rc, "volume.create", args, action="volume.create", target=body["name"],
                                   tenant_id=tenant_id)
        except ServiceError as err:
            if err.code != "placement_conflict" or rc.idempotency_key:
                raise
            last = err.message  # another volume took the room meanwhile: choose again
            continue
        with rt.view() as data:
            return storage_views.volume(data, data.volumes.get(volume_id, out.result)), out.replayed
    raise ServiceError(409, "no_storage_host", f"placement kept losing races; last: {last}")


async def list_(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None,
                tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        own = {i: data.volumes[i] for i in data.volume_names.get(tenant_id, {}).values() if i in data.volumes}
        items, nxt = views.page(own, limit, marker)
        return {"items": [storage_views.volume(data, v) for v in items], "next_marker": nxt}


async def get(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        return storage_views.volume(data, find(data, tenant_id, ident))


async def _propose(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None, op: str, action: str,
                   extra: dict[str, Any]) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        volume_id = find(data, tenant_id, ident)["id"]
        if "instance" in extra:
            extra = {"instance_id": _instance(data, tenant_id, extra["instance"])["id"],
                     "mount_path": extra.get("mount_path")}
    await rt.propose(rc, op, {"id": volume_id, **extra}, action=action, target=ident, tenant_id=tenant_id)
    with rt.view() as data:
        volume = data.volumes.get(volume_id)
        return storage_views.volume(data, volume) if volume is not None else {"id": volume_id, "deleted": True}


async def resize(rt: Runtime, rc: RequestContext, ident: str, size_gb: int, tenant: str | None) -> dict[str, Any]:
    return await _propose(rt, rc, ident, tenant, "volume.resize", "volume.resize", {"size_gb": size_gb})


async def delete(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> None:
    await _propose(rt, rc, ident, tenant, "volume.delete", "volume.delete", {})


async def attach(rt: Runtime, rc: RequestContext, ident: str, instance: str, mount_path: str | None,
                 tenant: str | None) -> dict[str, Any]:
    return await _propose(rt, rc, ident, tenant, "volume.attach", "volume.attach",
                          {"instance": instance, "mount_path": mount_path})


async def detach(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> dict[str, Any]:
    return await _propose(rt, rc, ident, tenant, "volume.detach", "volume.detach", {})


def resolve_for_instance(data: StateData, tenant_id: str, wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{"volume": id or name, "mount_path"}]`` of an instance create -> ``[{"volume_id", "mount_path"}]``."""
    return [{"volume_id": find(data, tenant_id, item["volume"])["id"], "mount_path": item.get("mount_path")}
            for item in wanted]


def host_of(data: StateData, resolved: list[dict[str, Any]]) -> str | None:
    """The one host an instance with these volumes must run on; 409 when they are on different hosts."""
    hosts = {data.volumes[item["volume_id"]]["host_id"] for item in resolved}
    if len(hosts) > 1:
        raise ServiceError(409, "conflict", "the volumes are on different hosts; an instance can only use volumes "
                                            "of one host")
    return next(iter(hosts), None)
