"""Snapshots of volumes, kept on the volume's host; a tombstone (``wanted: deleted``) until storaged drops it."""

from __future__ import annotations

from typing import Any

from controller.state import storage
from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import conflict, not_found
from controller.state.registry import handles


def get_snapshot(data: StateData, snapshot_id: str) -> dict[str, Any]:
    snap = data.snapshots.get(snapshot_id)
    if snap is None:
        raise not_found("snapshot", snapshot_id)
    return snap


@handles("snapshot.create")
def create(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    tenant_id = args["tenant_id"]
    if args["name"] in data.snapshot_names.get(tenant_id, {}):
        raise conflict(f"snapshot {args['name']!r} already exists")
    if args["id"] in data.snapshots:
        raise conflict(f"snapshot id {args['id']!r} already exists")
    volume = data.volumes.get(args["volume_id"])
    if volume is None or volume["tenant_id"] != tenant_id:
        raise not_found("volume", args["volume_id"])
    if volume["status"] not in ("available", "in-use"):
        raise conflict(f"volume {volume['name']} is {volume['status']}; snapshot it once it is available")
    now = ctx["time"]
    snap = {"id": args["id"], "name": args["name"], "tenant_id": tenant_id, "volume_id": volume["id"],
            "volume_name": volume["name"], "host_id": volume["host_id"], "size_gb": volume["size_gb"],
            "status": "creating", "status_reason": "", "wanted": "present", "created_at": now, "updated_at": now,
            "created_by": ctx.get("actor_name", "")}
    data.snapshots[snap["id"]] = snap
    data.snapshot_names.setdefault(tenant_id, {})[snap["name"]] = snap["id"]
    storage.touch(data, snap["host_id"])
    return snap


@handles("snapshot.delete")
def delete(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """Refused while a volume is still being restored from it."""
    snap = get_snapshot(data, args["id"])
    restoring = [v["name"] for v in data.volumes.values()
                 if v.get("from_snapshot") == snap["id"] and v["status"] == "creating"]
    if restoring:
        raise conflict(f"snapshot {snap['name']} is being restored into volume {restoring[0]}; "
                       "delete it once that volume is available")
    return storage.tombstone(data, snap, purge, ctx["time"])


def purge(data: StateData, snap: dict[str, Any]) -> None:
    data.snapshots.pop(snap["id"], None)
    data.snapshot_names.get(snap["tenant_id"], {}).pop(snap["name"], None)


def apply_report(data: StateData, snap: dict[str, Any], item: dict[str, Any], now: float) -> bool:
    state = item.get("state")
    if state == "deleted":
        if snap["wanted"] == "deleted":
            purge(data, snap)
            return True
        status, reason = "error", "storaged reports the snapshot deleted"
    elif snap["wanted"] == "deleted":
        return False
    elif state == "error":
        status, reason = "error", str(item.get("error") or "storaged reported an error")
    elif state == "available":
        status, reason = "available", ""
    else:
        return False
    if snap["status"] == status and snap["status_reason"] == reason:
        return False
    snap.update(status=status, status_reason=reason, updated_at=now)
    return True
