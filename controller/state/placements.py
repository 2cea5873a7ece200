"""Allocations: claims on a host's inventory, re-checked in apply so concurrent placements never overcommit."""

from __future__ import annotations

from typing import Any

from controller.state import attachments, host_ports, netindex
from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import ApplyError
from scheduler import claims
from scheduler.model import Inventory, usable

MAX_EVENTS = 20


def resources_of(instance: dict[str, Any]) -> dict[str, int]:
    return {"vcpu": instance["vcpus"], "memory_mb": instance["memory_mb"], "disk_gb": instance["disk_gb"]}


def inventory_of(host: dict[str, Any]) -> dict[str, Inventory]:
    return {rc: Inventory(int(inv["total"]), int(inv.get("reserved", 0)), float(inv.get("allocation_ratio", 1.0)))
            for rc, inv in host["inventory"].items()}


def shortfall(host: dict[str, Any], resources: dict[str, int]) -> str | None:
    """``claims.shortfall`` read straight from the host record (no Inventory objects: it runs for every claim)."""
    inventory = host["inventory"]
    used = host["used"]
    for rc, amount in resources.items():
        if amount <= 0:
            continue
        inv = inventory.get(rc)
        capacity = usable(int(inv["total"]), int(inv.get("reserved", 0)),
                          float(inv.get("allocation_ratio", 1.0))) if inv is not None else 0
        free = max(0, capacity - used.get(rc, 0))
        if amount > free:
            return f"{rc}: {amount} requested, {free} free of {capacity}"
    return None


def unusable_reason(host: dict[str, Any]) -> str | None:
    if host["state"] != "up":
        return f"host {host['name']} is {host['state']}"
    if not host["enabled"]:
        return f"host {host['name']} is disabled"
    if host["draining"]:
        return f"host {host['name']} is draining"
    return None


def check_claim(data: StateData, host_id: str, instance: dict[str, Any]) -> dict[str, Any]:
    """Raises 409 placement_conflict unless the host is usable and has room; changes nothing.

    An instance with volumes can only run on their host; its host ports must be free there."""
    pinned = attachments.required_host(data, instance["id"]) if data.instance_volumes else None
    if pinned is not None and pinned != host_id:
        where = data.hosts.get(pinned, {}).get("name", pinned)
        raise ApplyError(409, "placement_conflict", f"instance {instance['name']} has volumes on host {where}; "
                                                    "it runs there only")
    host = check_room(data, host_id, resources_of(instance))
    clash = host_ports.conflict(data, host_id, instance)
    if clash is not None:
        raise ApplyError(409, "placement_conflict", f"host {host['name']} cannot take instance {instance['name']}: "
                                                    f"{clash}")
    return host


def check_room(data: StateData, host_id: str, resources: dict[str, int], what: str = "it") -> dict[str, Any]:
    """Like check_claim, for ``resources`` (e.g. several instances' together)."""
    host = data.hosts.get(host_id)
    if host is None:
        raise ApplyError(409, "placement_conflict", f"host {host_id!r} no longer exists; retry")
    reason = unusable_reason(host)
    if reason is None:
        reason = shortfall(host, resources)
    if reason is not None:
        raise ApplyError(409, "placement_conflict", f"host {host['name']} cannot take {what} any more: {reason}")
    return host


def claim(data: StateData, host_id: str, instance: dict[str, Any], checked: bool = False) -> None:
    """Re-checks the host and its free capacity, then records the allocation. Raises 409 if it no longer fits.

    ``checked``: the caller has just checked the claim (a batch checks each host's room for all its instances)."""
    host = data.hosts[host_id] if checked else check_claim(data, host_id, instance)
    host["used"] = claims.add(host["used"], resources_of(instance))
    host["instance_count"] += 1
    host["desired_rev"] = data.revision
    instance["host_id"] = host_id
    data.host_instances.setdefault(host_id, []).append(instance["id"])
    data.unplaced_instances.pop(instance["id"], None)
    netindex.placed(data, instance)


def release(data: StateData, instance: dict[str, Any]) -> None:
    netindex.unplaced(data, instance)
    host = data.hosts.get(instance.get("host_id") or "")
    if host is not None:
        host["used"] = claims.add(host["used"], resources_of(instance), sign=-1)
        host["instance_count"] = max(0, host["instance_count"] - 1)
        host["desired_rev"] = data.revision
    on_host = data.host_instances.get(instance.get("host_id") or "")
    if on_host is not None:
        if instance["id"] in on_host:
            on_host.remove(instance["id"])
        if not on_host:
            del data.host_instances[instance["host_id"]]
    instance["host_id"] = None
    data.unplaced_instances[instance["id"]] = None


def instances_on(data: StateData, host_id: str) -> list[dict[str, Any]]:
    """The instances placed on a host (from the index, not a scan of every instance)."""
    return [data.instances[i] for i in data.host_instances.get(host_id, ()) if i in data.instances]


def record_event(instance: dict[str, Any], ctx: CommandContext, message: str) -> None:
    events = instance.setdefault("events", [])
    events.append({"time": ctx["time"], "message": message})
    del events[:-MAX_EVENTS]


def set_status(instance: dict[str, Any], ctx: CommandContext, status: str, reason: str = "") -> None:
    if instance["status"] != status or instance.get("status_reason", "") != reason:
        record_event(instance, ctx, f"{status}: {reason}" if reason else status)
    instance["status"] = status
    instance["status_reason"] = reason
    instance["updated_at"] = ctx["time"]


def move(data: StateData, instance: dict[str, Any], new_host_id: str | None, ctx: CommandContext, why: str) -> bool:
    """Gives the instance a new generation on ``new_host_id`` (or leaves it pending). True if it was placed."""
    release(data, instance)
    instance["generation"] += 1
    if new_host_id is not None:
        try:
            claim(data, new_host_id, instance)
        except ApplyError as err:
            set_status(instance, ctx, "pending", f"{why}; waiting for a host ({err.message})")
            return False
        set_status(instance, ctx, "scheduled", f"{why}; placed on {data.hosts[new_host_id]['name']}")
        return True
    set_status(instance, ctx, "pending", f"{why}; waiting for a host")
    return False


def evacuate(data: StateData, host: dict[str, Any], moves: dict[str, str | None], why: str,
             ctx: CommandContext) -> dict[str, str | None]:
    """Takes every instance off a lost host. Restartable ones move (``moves`` holds the proposer's choice)."""
    from controller.state.instances import purge  # a cycle by design: purge also releases claims

    moved: dict[str, str | None] = {}
    for instance in instances_on(data, host["id"]):
        if instance["desired"] == "deleted":
            purge(data, instance)
        elif instance["restart_policy"] == "never" or instance["desired"] == "stopped":
            release(data, instance)
            instance["generation"] += 1
            set_status(instance, ctx, "error" if instance["desired"] == "running" else "stopped",
                       f"{why}; not restarted (restart policy {instance['restart_policy']})")
            moved[instance["id"]] = None
        else:
            target = moves.get(instance["id"])
            move(data, instance, target, ctx, why)
            moved[instance["id"]] = instance["host_id"]
    return moved
