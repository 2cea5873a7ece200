"""Instances: desired state, placement (claimed in apply), status reported by agents, server groups, types.

Status: pending -> scheduled -> creating -> running | stopped | error; ``desired`` is what the owner asked
for (running, stopped, deleted). Every new placement bumps ``generation``; agents run only the current one.
"""

from __future__ import annotations

from typing import Any

from controller.state import quotas
from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import ApplyError, conflict, not_found
from controller.state.placements import check_claim, claim, move, record_event, release, resources_of, set_status
from controller.state.registry import handles

SPEC_FIELDS = ("kind", "image", "vcpus", "memory_mb", "disk_gb", "command", "env", "ports", "user_data",
               "restart_policy", "zone", "group", "instance_type", "required_traits")
REPORTED = ("creating", "running", "stopped", "error")


def get_instance(data: StateData, instance_id: str) -> dict[str, Any]:
    instance = data.instances.get(instance_id)
    if instance is None:
        raise not_found("instance", instance_id)
    return instance


def quota_deltas(instance: dict[str, Any], sign: int = 1) -> dict[str, int]:
    return {"instances": sign, "vcpus": sign * instance["vcpus"], "memory_mb": sign * instance["memory_mb"]}


@handles("instance.create")
def create(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    tenant_id = args["tenant_id"]
    if tenant_id not in data.tenants:
        raise not_found("tenant", tenant_id)
    names = data.instance_names.get(tenant_id, {})
    if args["name"] in names:
        raise conflict(f"instance {args['name']!r} already exists")
    if args["id"] in data.instances:
        raise conflict(f"instance id {args['id']!r} already exists")
    group = args.get("group")
    if group and group not in data.server_groups.get(tenant_id, {}):
        raise not_found("server group", group)
    now = ctx["time"]
    instance: dict[str, Any] = {
        "id": args["id"], "name": args["name"], "tenant_id": tenant_id, "host_id": None, "generation": 1,
        "desired": "running", "status": "pending", "status_reason": "", "addresses": [], "action_seq": 0,
        "reboot_seq": 0, "tags": list(args.get("tags", [])), "metadata": dict(args.get("metadata", {})),
        "created_at": now, "updated_at": now, "created_by": ctx.get("actor_name", ""), "events": [],
        **{f: args.get(f) for f in SPEC_FIELDS},
    }
    quotas.check(data, tenant_id, quota_deltas(instance))
    claim(data, args["host_id"], instance)
    set_status(instance, ctx, "scheduled", f"placed on {data.hosts[args['host_id']]['name']}")
    data.instances[instance["id"]] = instance
    data.instance_names.setdefault(tenant_id, {})[instance["name"]] = instance["id"]
    if group:
        data.server_groups[tenant_id][group]["members"].append(instance["id"])
    quotas.consume(data, tenant_id, quota_deltas(instance))
    return instance


@handles("instance.place")
def place(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """Places a pending instance, or moves a placed one (drain): a new generation on the new host."""
    instance = get_instance(data, args["id"])
    if instance["generation"] != args["generation"] or instance["desired"] == "deleted":
        raise ApplyError(409, "placement_conflict", "instance changed meanwhile; retry")
    if instance["host_id"] == args["host_id"]:
        raise ApplyError(409, "placement_conflict", "instance is already on that host")
    check_claim(data, args["host_id"], instance)  # refuse before anything changes: a failed move keeps it running
    move(data, instance, args["host_id"], ctx, args.get("why", "rescheduled"))
    return instance


@handles("instance.action")
def action(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    instance = get_instance(data, args["id"])
    verb = args["action"]
    if instance["desired"] == "deleted":
        raise conflict(f"instance {instance['name']} is being deleted")
    if verb == "stop":
        instance["desired"] = "stopped"
    elif verb == "start":
        instance["desired"] = "running"
        if instance["host_id"] is None and instance["status"] != "pending":
            instance["generation"] += 1
            set_status(instance, ctx, "pending", "start requested; waiting for a host")
    elif verb == "reboot":
        if instance["desired"] != "running":
            raise conflict(f"instance {instance['name']} is stopped; start it instead")
        instance["reboot_seq"] += 1
    else:
        raise ApplyError(400, "bad_request", f"unknown action {verb!r}")
    instance["action_seq"] += 1
    record_event(instance, ctx, f"{verb} requested")
    _touch_host(data, instance)
    return instance


@handles("instance.update")
def update(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """Tags and metadata: no effect on where or how it runs."""
    instance = get_instance(data, args["id"])
    if "tags" in args:
        instance["tags"] = list(args["tags"])
    if "metadata" in args:
        instance["metadata"] = dict(args["metadata"])
    instance["updated_at"] = ctx["time"]
    return instance


@handles("instance.delete")
def delete(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """Marks it deleted; the agent removes it and reports back. With no live host it goes at once."""
    instance = get_instance(data, args["id"])
    host = data.hosts.get(instance.get("host_id") or "")
    if host is None or host["state"] != "up":
        purge(data, instance)
        return {"deleted": True}
    instance["desired"] = "deleted"
    set_status(instance, ctx, "deleting")
    _touch_host(data, instance)
    return {"deleted": False}


@handles("instance.report")
def report(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """Actual states from one host's agent. A report about another generation or host changes nothing."""
    host_id = args["host_id"]
    applied = 0
    for item in args["reports"]:
        instance = data.instances.get(item["id"])
        if instance is None or instance["host_id"] != host_id or instance["generation"] != item["generation"]:
            continue
        if item["status"] == "gone":
            if instance["desired"] == "deleted":
                purge(data, instance)
                applied += 1
            continue
        if item["status"] not in REPORTED or instance["desired"] == "deleted":
            continue
        set_status(instance, ctx, item["status"], item.get("reason", ""))
        instance["addresses"] = list(item.get("addresses", []))
        applied += 1
    return {"applied": applied}


def purge(data: StateData, instance: dict[str, Any]) -> None:
    release(data, instance)
    tenant_id = instance["tenant_id"]
    data.instances.pop(instance["id"], None)
    data.instance_names.get(tenant_id, {}).pop(instance["name"], None)
    group = instance.get("group")
    if group and group in data.server_groups.get(tenant_id, {}):
        members = data.server_groups[tenant_id][group]["members"]
        if instance["id"] in members:
            members.remove(instance["id"])
    quotas.consume(data, tenant_id, quota_deltas(instance, -1))


def _touch_host(data: StateData, instance: dict[str, Any]) -> None:
    host = data.hosts.get(instance.get("host_id") or "")
    if host is not None:
        host["desired_rev"] = data.revision


@handles("group.create")
def create_group(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    groups = data.server_groups.setdefault(args["tenant_id"], {})
    if args["name"] in groups:
        raise conflict(f"server group {args['name']!r} already exists")
    group = {"name": args["name"], "tenant_id": args["tenant_id"], "policy": args["policy"], "members": [],
             "created_at": ctx["time"]}
    groups[args["name"]] = group
    return group


@handles("group.delete")
def delete_group(data: StateData, args: dict[str, Any], ctx: CommandContext) -> None:
    group = data.server_groups.get(args["tenant_id"], {}).get(args["name"])
    if group is None:
        raise not_found("server group", args["name"])
    if group["members"]:
        raise conflict(f"server group {args['name']!r} still has {len(group['members'])} member(s)")
    del data.server_groups[args["tenant_id"]][args["name"]]


@handles("instance_type.create")
def create_type(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    if args["name"] in data.instance_types:
        raise conflict(f"instance type {args['name']!r} already exists")
    itype = {k: args[k] for k in ("name", "vcpus", "memory_mb", "disk_gb")}
    data.instance_types[args["name"]] = itype
    return itype


@handles("instance_type.delete")
def delete_type(data: StateData, args: dict[str, Any], ctx: CommandContext) -> None:
    if data.instance_types.pop(args["name"], None) is None:
        raise not_found("instance type", args["name"])


__all__ = ["purge", "resources_of"]
