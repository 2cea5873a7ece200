"""Hosts that run storaged: their backend and capacity, and what their storaged reports about volumes/snapshots.

A storage host's capacity is claimed like a compute inventory: ``allocated_gb`` is the sum of the sizes of the
volumes placed on it (taken in apply), and a new volume fits while ``allocated_gb + size <= total_gb``. ``rev``
moves whenever the host's desired volumes or snapshots change, so its storaged's long-poll returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import ApplyError
from controller.state.registry import handles

REPORTED_FIELDS = ("backend", "total_gb", "free_gb", "s3_endpoint")


def touch(data: StateData, host_id: str) -> None:
    record = data.storage_hosts.get(host_id)
    if record is not None:
        record["rev"] = data.revision


def tombstone(data: StateData, record: dict[str, Any], purge: Callable[[StateData, dict[str, Any]], None],
              now: float) -> dict[str, Any]:
    """Deletes a volume or snapshot: at once when its host left the cluster (nothing left to clean up), else it
    becomes a tombstone (``wanted: deleted``) that its storaged removes and then reports gone."""
    if record["host_id"] not in data.hosts:
        purge(data, record)
        return {"deleted": True}
    record["wanted"] = "deleted"
    record["status"] = "deleting"
    record["updated_at"] = now
    touch(data, record["host_id"])
    return {"deleted": False}


def room_of(record: dict[str, Any]) -> int:
    return max(0, int(record["total_gb"]) - int(record["allocated_gb"]))


def unusable_reason(data: StateData, host_id: str) -> str | None:
    host = data.hosts.get(host_id)
    if host is None or host_id not in data.storage_hosts:
        return f"host {host_id!r} does not run storaged"
    if host["state"] in ("down", "fencing"):
        return f"host {host['name']} is {host['state']}"
    if not host["enabled"] or host["draining"]:
        return f"host {host['name']} is {'disabled' if not host['enabled'] else 'draining'}"
    return None


def check_room(data: StateData, host_id: str, size_gb: int, zone: str | None, backend: str | None) -> None:
    """409 placement_conflict unless the storage host is usable, in ``zone``, of ``backend``, with room."""
    reason = unusable_reason(data, host_id)
    if reason is None:
        record = data.storage_hosts[host_id]
        host = data.hosts[host_id]
        if zone is not None and host["zone"] != zone:
            reason = f"host {host['name']} is in zone {host['zone']}, not {zone}"
        elif backend is not None and record["backend"] != backend:
            reason = f"host {host['name']} has backend {record['backend']}, not {backend}"
        elif room_of(record) < size_gb:
            reason = f"host {host['name']} has {room_of(record)} GB free, {size_gb} GB requested"
    if reason is not None:
        raise ApplyError(409, "placement_conflict", f"cannot place the volume there any more: {reason}")


def allocate(data: StateData, host_id: str, size_gb: int) -> None:
    record = data.storage_hosts.get(host_id)
    if record is not None:
        record["allocated_gb"] = max(0, int(record["allocated_gb"]) + size_gb)
        record["rev"] = data.revision


@handles("storage.report")
def report(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """A storaged's report: its capacity (when it changed) and the states of its volumes and snapshots."""
    from controller.state import backups, snapshots, volumes  # they use this module's claims

    host_id = args["host_id"]
    if host_id not in data.hosts:
        raise ApplyError(403, "unknown_host", "this host was deleted from the cluster; join it again")
    if "capacity" in args:
        record = data.storage_hosts.setdefault(host_id, {"host_id": host_id, "allocated_gb": 0,
                                                         "rev": data.revision, "backend": "", "s3_endpoint": None,
                                                         "total_gb": 0, "free_gb": 0})
        for key in REPORTED_FIELDS:
            if key in args["capacity"]:
                record[key] = args["capacity"][key]
        record["reported_at"] = ctx["time"]
    applied = 0
    now = ctx["time"]
    for item in args.get("volumes", []):
        volume = data.volumes.get(str(item.get("volume_id")))
        if volume is not None and volume["host_id"] == host_id and volumes.apply_report(data, volume, item, now):
            applied += 1
    for item in args.get("snapshots", []):
        snap = data.snapshots.get(str(item.get("snapshot_id")))
        if snap is not None and snap["host_id"] == host_id and snapshots.apply_report(data, snap, item, now):
            applied += 1
    for item in args.get("backups", []):
        backup = data.backups.get(str(item.get("backup_id")))
        if backup is not None and backup["host_id"] == host_id and backups.apply_report(backup, item, now):
            applied += 1
    return {"applied": applied}
