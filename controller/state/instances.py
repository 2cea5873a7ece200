"""Instances: desired state, placement (claimed in apply), status reported by agents, server groups, types.

Status: pending -> scheduled -> creating -> running | stopped | error; ``desired`` is what the owner asked
for (running, stopped, deleted). Every new placement bumps ``generation``; agents run only the current one.
"""

from __future__ import annotations

from typing import Any

from controller.state import attachments, images, ports, quotas
from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import ApplyError, conflict, not_found
from controller.state.placements import (
    check_claim,
    check_room,
    claim,
    inventory_of,
    move,
    record_event,
    release,
    resources_of,
    set_status,
)
from controller.state.registry import handles
from scheduler import claims

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
    instance = _new_record(data, args, ctx)
    quotas.check(data, tenant_id, quota_deltas(instance))
    net_plan = ports.check_one(data, tenant_id, args) if args.get("network") else None
    wanted_volumes = list(args.get("volumes") or [])
    if wanted_volumes:  # checked before anything changes; attached in this same apply
        attachments.check_many(data, instance, args["host_id"], wanted_volumes)
    claim(data, args["host_id"], instance)
    _insert(data, instance, args, ctx, net_plan)
    if wanted_volumes:
        attachments.link_many(data, instance, wanted_volumes, ctx["time"])
    return instance


def _new_record(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    now = ctx["time"]
    instance: dict[str, Any] = {
        "id": args["id"], "name": args["name"], "tenant_id": args["tenant_id"], "host_id": None, "generation": 1,
        "desired": "running", "status": "pending", "status_reason": "", "addresses": [], "action_seq": 0,
        "reboot_seq": 0, "tags": list(args.get("tags", [])), "metadata": dict(args.get("metadata", {})),
        "created_at": now, "updated_at": now, "created_by": ctx.get("actor_name", ""), "events": [],
        **{f: args.get(f) for f in SPEC_FIELDS},
    }
    if instance["kind"] == "vm":  # the image's blobs, so the instance keeps booting the same bits
        instance["vm_image"] = images.boot_spec(data, instance["image"])
    return instance


def _insert(data: StateData, instance: dict[str, Any], args: dict[str, Any], ctx: CommandContext,
            net_plan: ports.Plan | None) -> None:
    """Records a claimed instance: status, indexes, group, quota, port."""
    tenant_id = instance["tenant_id"]
    set_status(instance, ctx, "scheduled", f"placed on {data.hosts[args['host_id']]['name']}")
    data.instances[instance["id"]] = instance
    data.instance_names.setdefault(tenant_id, {})[instance["name"]] = instance["id"]
    group = args.get("group")
    if group:
        data.server_groups[tenant_id][group]["members"].append(instance["id"])
    quotas.consume(data, tenant_id, quota_deltas(instance))
    if net_plan is not None:
        ports.attach(data, instance, args["network"], net_plan, ctx)


MAX_BATCH = 1000


@handles("instance.create_batch")
def create_batch(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """Several instances of one spec in one command, all or nothing.

    ``items`` are ``{"id", "name", "host_id"}``. Everything that could refuse one of them (names, ids, the group,
    the quota for all of them, each host's room for all the instances placed on it) is checked before anything
    changes; then each is created exactly as ``instance.create`` does. The result lists the ids only: the
    instances themselves are read from the state (a copy of hundreds of them per replica would be wasted).
    """
    tenant_id = args["tenant_id"]
    spec: dict[str, Any] = args["spec"]
    items: list[dict[str, Any]] = args["items"]
    if tenant_id not in data.tenants:
        raise not_found("tenant", tenant_id)
    if not 1 <= len(items) <= MAX_BATCH:
        raise ApplyError(422, "validation_failed", f"a batch holds 1 to {MAX_BATCH} instances, not {len(items)}")
    names = data.instance_names.get(tenant_id, {})
    seen_names: set[str] = set()
    seen_ids: set[str] = set()
    for item in items:
        if item["name"] in names or item["name"] in seen_names:
            raise conflict(f"instance {item['name']!r} already exists")
        if item["id"] in data.instances or item["id"] in seen_ids:
            raise conflict(f"instance id {item['id']!r} already exists")
        seen_names.add(item["name"])
        seen_ids.add(item["id"])
    group = spec.get("group")
    if group and group not in data.server_groups.get(tenant_id, {}):
        raise not_found("server group", group)
    quotas.check(data, tenant_id, {k: v * len(items) for k, v in quota_deltas(spec).items()})
    per_host: dict[str, int] = {}
    for item in items:
        per_host[item["host_id"]] = per_host.get(item["host_id"], 0) + 1
    one = resources_of(spec)
    for host_id, count in per_host.items():
        check_room(data, host_id, {rc: amount * count for rc, amount in one.items()}, f"{count} instance(s)")
    net_plan = ports.check_batch(data, tenant_id, spec, items, per_host) if spec.get("network") else None
    # Everything that could refuse an instance was checked above for the whole batch, so each is recorded
    # without checking it again (half of the apply step's time). Not when the first one makes the tenant's
    # default VPC (the others' plans differ) or for volumes (checked per instance).
    checked = not spec.get("volumes") and (net_plan is None or net_plan.make_default is None)
    for item in items:
        args = {**spec, **ports.item_network(spec, item), "tenant_id": tenant_id, "id": item["id"],
                "name": item["name"], "host_id": item["host_id"]}
        if not checked:
            create(data, args, ctx)
            continue
        instance = _new_record(data, args, ctx)
        claim(data, item["host_id"], instance, checked=True)
        _insert(data, instance, args, ctx, net_plan)
    return {"ids": [item["id"] for item in items]}


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


@handles("instance.resize")
def resize(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """In place: the new size is claimed on the instance's current host (re-checked here), quotas adjusted."""
    instance = get_instance(data, args["id"])
    if instance["desired"] == "deleted":
        raise conflict(f"instance {instance['name']} is being deleted")
    new = {"vcpus": args["vcpus"], "memory_mb": args["memory_mb"], "disk_gb": args["disk_gb"]}
    if new["disk_gb"] < instance["disk_gb"]:
        raise ApplyError(422, "validation_failed", f"disks only grow: {instance['disk_gb']} GB -> {new['disk_gb']} GB")
    resized = {**instance, **new}
    deltas = {k: v for k, v in quota_deltas(resized).items() if k != "instances"}
    current = {k: v for k, v in quota_deltas(instance).items() if k != "instances"}
    quotas.check(data, instance["tenant_id"], {k: deltas[k] - current[k] for k in deltas})
    host = data.hosts.get(instance.get("host_id") or "")
    if host is not None:
        used_without = claims.add(host["used"], resources_of(instance), sign=-1)
        reason = claims.shortfall(inventory_of(host), used_without, resources_of(resized))
        if reason is not None:
            raise ApplyError(409, "no_valid_host", f"the new size does not fit on host {host['name']}: {reason}")
        host["used"] = claims.add(used_without, resources_of(resized))
        host["desired_rev"] = data.revision
    quotas.consume(data, instance["tenant_id"], {k: deltas[k] - current[k] for k in deltas})
    instance.update(new)
    instance["instance_type"] = args.get("instance_type")
    instance["spec_rev"] = instance.get("spec_rev", 0) + 1
    record_event(instance, ctx, f"resized to {new['vcpus']} vcpu, {new['memory_mb']} MB, {new['disk_gb']} GB")
    instance["updated_at"] = ctx["time"]
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
        if "netns" in item:
            ports.set_netns(data, instance, item["netns"])
        applied += 1
    return {"applied": applied}


def purge(data: StateData, instance: dict[str, Any]) -> None:
    release(data, instance)
    data.unplaced_instances.pop(instance["id"], None)
    ports.detach(data, instance)
    attachments.release_all(data, instance["id"], instance["updated_at"])
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
