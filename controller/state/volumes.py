"""Volumes: placed on a storaged host (capacity claimed in apply), resized (grow only), deleted as tombstones.

Status: creating -> available | in-use (attached) | error; resizing while storaged grows it; deleting while
``wanted`` is "deleted" and storaged has not reported it gone. The quota (volumes, volume_gb) and the host's
allocated capacity are taken at create and given back when the tombstone is purged.
"""

from __future__ import annotations

from typing import Any

from controller.state import backups, quotas, storage
from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import ApplyError, conflict, not_found
from controller.state.registry import handles

KINDS = ("filesystem", "block")
STATUSES = ("creating", "available", "in-use", "error", "deleting", "resizing")


def get_volume(data: StateData, volume_id: str) -> dict[str, Any]:
    volume = data.volumes.get(volume_id)
    if volume is None:
        raise not_found("volume", volume_id)
    return volume


def quota_deltas(size_gb: int, sign: int = 1) -> dict[str, int]:
    return {"volumes": sign, "volume_gb": sign * size_gb}


def settled_status(volume: dict[str, Any]) -> str:
    """What a volume storaged holds is, given its attachment."""
    return "in-use" if volume.get("attachment") else "available"


def snapshots_of(data: StateData, volume_id: str) -> list[dict[str, Any]]:
    return [s for s in data.snapshots.values() if s["volume_id"] == volume_id]


@handles("volume.create")
def create(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """A new volume: empty, restored from ``from_snapshot`` on the snapshot's host, or filled from the backup
    ``from_backup`` on any host."""
    tenant_id = args["tenant_id"]
    if tenant_id not in data.tenants:
        raise not_found("tenant", tenant_id)
    if args["name"] in data.volume_names.get(tenant_id, {}):
        raise conflict(f"volume {args['name']!r} already exists")
    if args["id"] in data.volumes:
        raise conflict(f"volume id {args['id']!r} already exists")
    if args["kind"] not in KINDS:
        raise ApplyError(422, "validation_failed", f"kind must be one of {', '.join(KINDS)}")
    size_gb = int(args["size_gb"])
    source = args.get("from_snapshot")
    if source is not None:
        snap = data.snapshots.get(source)
        if snap is None or snap["tenant_id"] != tenant_id or snap["wanted"] == "deleted":
            raise not_found("snapshot", source)
        if snap["status"] != "available":
            raise conflict(f"snapshot {snap['name']} is {snap['status']}; wait until it is available")
        if snap["host_id"] != args["host_id"]:
            raise ApplyError(409, "placement_conflict", "a restored volume must be on its snapshot's host")
        if size_gb < snap["size_gb"]:
            raise ApplyError(400, "bad_request", f"a volume restored from snapshot {snap['name']} needs at least "
                                                 f"{snap['size_gb']} GB")
    from_backup = args.get("from_backup")
    if from_backup is not None:
        if source is not None:
            raise ApplyError(400, "bad_request", "restore from a snapshot or from a backup, not both")
        backups.check_restore(data, tenant_id, from_backup, size_gb, args["kind"])
    quotas.check(data, tenant_id, quota_deltas(size_gb))
    storage.check_room(data, args["host_id"], size_gb, args.get("zone"), args.get("backend"))
    now = ctx["time"]
    host = data.hosts.get(args["host_id"], {})
    volume: dict[str, Any] = {
        "id": args["id"], "name": args["name"], "tenant_id": tenant_id, "size_gb": size_gb, "kind": args["kind"],
        "zone": host.get("zone"), "backend": data.storage_hosts[args["host_id"]]["backend"],
        "host_id": args["host_id"], "status": "creating", "status_reason": "", "attachment": None, "path": None,
        "format": None, "from_snapshot": source, "from_backup": from_backup, "wanted": "present", "created_at": now,
        "updated_at": now, "created_by": ctx.get("actor_name", ""),
    }
    data.volumes[volume["id"]] = volume
    data.volume_names.setdefault(tenant_id, {})[volume["name"]] = volume["id"]
    quotas.consume(data, tenant_id, quota_deltas(size_gb))
    storage.allocate(data, volume["host_id"], size_gb)
    return volume


@handles("volume.resize")
def resize(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """Grow only: the difference is claimed on the volume's host and counted in the quota."""
    volume = get_volume(data, args["id"])
    new_size = int(args["size_gb"])
    if volume["wanted"] == "deleted":
        raise conflict(f"volume {volume['name']} is being deleted")
    if new_size < volume["size_gb"]:
        raise ApplyError(400, "bad_request", f"volumes only grow: {volume['size_gb']} GB -> {new_size} GB")
    if new_size == volume["size_gb"]:
        return volume
    if volume["status"] not in ("available", "in-use"):
        raise conflict(f"volume {volume['name']} is {volume['status']}; resize it once it is available")
    grow = new_size - volume["size_gb"]
    quotas.check(data, volume["tenant_id"], {"volume_gb": grow})
    storage.check_room(data, volume["host_id"], grow, None, None)
    quotas.consume(data, volume["tenant_id"], {"volume_gb": grow})
    storage.allocate(data, volume["host_id"], grow)
    volume["size_gb"] = new_size
    volume["status"] = "resizing"
    volume["updated_at"] = ctx["time"]
    return volume


@handles("volume.delete")
def delete(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """Refused while attached or while it has snapshots; else a tombstone until storaged reports it gone."""
    volume = get_volume(data, args["id"])
    if volume["attachment"]:
        instance = data.instances.get(volume["attachment"]["instance_id"], {})
        raise conflict(f"volume {volume['name']} is attached to instance "
                       f"{instance.get('name', volume['attachment']['instance_id'])}; detach it first")
    snaps = snapshots_of(data, volume["id"])
    if snaps:
        raise conflict(f"volume {volume['name']} has {len(snaps)} snapshot{'' if len(snaps) == 1 else 's'}; "
                       "delete them first")
    return storage.tombstone(data, volume, purge, ctx["time"])


def purge(data: StateData, volume: dict[str, Any]) -> None:
    data.volumes.pop(volume["id"], None)
    data.volume_names.get(volume["tenant_id"], {}).pop(volume["name"], None)
    quotas.consume(data, volume["tenant_id"], quota_deltas(volume["size_gb"], -1))
    storage.allocate(data, volume["host_id"], -volume["size_gb"])


def apply_report(data: StateData, volume: dict[str, Any], item: dict[str, Any], now: float) -> bool:
    """One volume's state from its storaged; True if something changed."""
    state = item.get("state")
    if state == "deleted":
        if volume["wanted"] == "deleted":
            purge(data, volume)
            return True
        return _set(volume, now, "error", "storaged reports the volume deleted")
    if volume["wanted"] == "deleted":
        return False
    if state == "error":
        return _set(volume, now, "error", str(item.get("error") or "storaged reported an error"))
    if state != "available":
        return False
    changed = False
    for key in ("path", "format"):
        if item.get(key) is not None and volume.get(key) != item[key]:
            volume[key] = item[key]
            changed = True
    if volume["status"] == "resizing" and int(item.get("size_gb") or 0) < volume["size_gb"]:
        return changed
    return _set(volume, now, settled_status(volume), "") or changed


def _set(volume: dict[str, Any], now: float, status: str, reason: str) -> bool:
    if volume["status"] == status and volume["status_reason"] == reason:
        return False
    volume["status"] = status
    volume["status_reason"] = reason
    volume["updated_at"] = now
    return True
