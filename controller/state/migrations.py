"""Live migrations of VMs off draining hosts: a record on the instance, and the flip in one command.

``instance["migration"]``: id, source, target (host ids), generation (the instance's generation once on the
target), phase (``preparing`` on the target -> ``migrating`` from the source), started_at, target_info (what
the target's agent prepared), reserved (resources held on the target meanwhile). The target host lists the
instance in ``incoming_migrations`` so its agent sees it in its desired state.

``migration.finish`` ends it in one command: on success the instance's host and generation flip to the target
(its claim is the reservation); on failure (or a timeout) the instance is cold-moved to the same target with
the same new generation, so a domain that did arrive there after all is adopted, never started twice.
"""

from __future__ import annotations

from typing import Any

from controller.state import hosts, netindex
from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import ApplyError
from controller.state.instances import get_instance
from controller.state.placements import check_claim, move, record_event, release, resources_of, set_status
from controller.state.registry import handles
from scheduler import claims

INCOMING = "incoming_migrations"


def _conflict(message: str) -> ApplyError:
    return ApplyError(409, "migration_conflict", message)


@handles("migration.start")
def start(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    instance = get_instance(data, args["id"])
    if instance["generation"] != args["generation"] or instance["desired"] != "running":
        raise _conflict("instance changed meanwhile; retry")
    if instance.get("migration"):
        raise _conflict(f"instance {instance['name']} is already migrating")
    source, target_id = instance.get("host_id"), args["host_id"]
    if source is None or source == target_id:
        raise _conflict("instance is not placed, or already on that host")
    target = check_claim(data, target_id, instance)
    reserved = resources_of(instance)
    target["used"] = claims.add(target["used"], reserved)
    target.setdefault(INCOMING, []).append(instance["id"])
    instance["migration"] = {"id": args["migration_id"], "source": source, "target": target_id,
                             "generation": instance["generation"] + 1, "phase": "preparing",
                             "started_at": ctx["time"], "target_info": {}, "reserved": reserved}
    record_event(instance, ctx, f"live migration to host {target['name']} started")
    hosts.touch(data, target)
    return dict(instance["migration"])


@handles("migration.prepared")
def prepared(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """The target's agent made the disk files: the source may migrate now."""
    instance = get_instance(data, args["id"])
    mig = instance.get("migration")
    if mig is None or mig["id"] != args["migration_id"] or mig["target"] != args["host_id"]:
        raise _conflict("no such migration to this host")
    if mig["phase"] == "preparing":
        mig["target_info"] = {str(k): str(v) for k, v in dict(args["target"]).items()}
        mig["phase"] = "migrating"
        source = data.hosts.get(mig["source"])
        if source is not None:
            hosts.touch(data, source)
    return dict(mig)


@handles("migration.finish")
def finish(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """``ok``: the VM runs on the target now. Otherwise: a cold move to the target. Unknown ids change nothing."""
    instance = data.instances.get(args["id"])
    mig = instance.get("migration") if instance is not None else None
    if instance is None or mig is None or mig["id"] != args["migration_id"]:
        return {"outcome": "unknown"}
    del instance["migration"]
    target = data.hosts.get(mig["target"])
    if target is not None:
        target["used"] = claims.add(target["used"], mig["reserved"], sign=-1)
        if instance["id"] in target.get(INCOMING, []):
            target[INCOMING].remove(instance["id"])
        hosts.touch(data, target)
    if (instance["host_id"] != mig["source"] or instance["generation"] != mig["generation"] - 1
            or instance["desired"] == "deleted" or target is None):
        return {"outcome": "stale"}  # moved, deleted or its target went away meanwhile
    source_name = data.hosts[mig["source"]]["name"] if mig["source"] in data.hosts else mig["source"]
    if args["ok"]:
        release(data, instance)
        instance["generation"] = mig["generation"]
        _assign(data, target, instance)
        set_status(instance, ctx, "running", f"live-migrated from host {source_name} to host {target['name']}")
        return {"outcome": "migrated"}
    why = f"live migration to host {target['name']} failed ({args.get('reason') or 'no reason'}); cold move"
    placed = move(data, instance, target["id"], ctx, why)
    return {"outcome": "cold-moved" if placed else "pending"}


def _assign(data: StateData, host: dict[str, Any], instance: dict[str, Any]) -> None:
    """Like placements.claim, without re-checking: the VM already runs there, on the capacity reserved for it."""
    host["used"] = claims.add(host["used"], resources_of(instance))
    host["instance_count"] += 1
    host["desired_rev"] = data.revision
    instance["host_id"] = host["id"]
    data.host_instances.setdefault(host["id"], []).append(instance["id"])
    data.unplaced_instances.pop(instance["id"], None)
    netindex.placed(data, instance)
