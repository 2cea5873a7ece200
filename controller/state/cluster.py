"""Cluster bookkeeping: member API addresses, the admin bootstrap, restore and barriers."""

from __future__ import annotations

from typing import Any

from controller.state import images
from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import conflict
from controller.state.keys import insert_key
from controller.state.registry import handles
from controller.state.tenants import DEFAULT_TENANT, insert_tenant
from controller.state.users import insert_user


@handles("noop")
def noop(data: StateData, args: dict[str, Any], ctx: CommandContext) -> None:
    """A barrier: once applied, every write committed before it is visible."""


@handles("cluster.announce")
def announce(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    member = data.members.setdefault(args["raft_address"], {"raft_address": args["raft_address"]})
    member["api_address"] = args.get("api_address")
    if "agent_address" in args:
        member["agent_address"] = args["agent_address"]
    return member


@handles("cluster.forget")
def forget(data: StateData, args: dict[str, Any], ctx: CommandContext) -> None:
    """A removed member: gone from the members and from the holders of every image blob (agents would
    otherwise be sent to fetch blobs from it)."""
    data.members.pop(args["raft_address"], None)
    images.forget_holder(data, args["raft_address"])


@handles("cluster.bootstrap_admin")
def bootstrap_admin(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """Creates tenant ``default``, user ``admin`` and the admin API key once per cluster."""
    if data.meta.get("admin_bootstrapped"):
        return {"created": False}
    if args["key_id"] in data.keys:  # checked before anything is written: a refusal changes nothing
        raise conflict(f"key id {args['key_id']!r} already exists")
    now = ctx["time"]
    if DEFAULT_TENANT not in data.tenant_names:
        insert_tenant(data, args["tenant_id"], DEFAULT_TENANT, "cluster administration", now)
    tenant_id = data.tenant_names[DEFAULT_TENANT]
    if "admin" not in data.user_names:
        insert_user(data, {"id": args["user_id"], "name": "admin", "tenant_id": tenant_id, "role": "admin"}, now)
    user_id = data.user_names["admin"]
    insert_key(data, {"id": args["key_id"], "name": "bootstrap", "user_id": user_id,
                      "secret_hash": args["secret_hash"]}, now)
    data.meta["admin_bootstrapped"] = True
    data.meta.setdefault("cluster_id", args.get("cluster_id"))
    return {"created": True}


@handles("cluster.restore")
def restore(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """Loads a backup into a brand-new cluster. Refused once the cluster holds any state."""
    if not data.is_empty() or data.meta.get("admin_bootstrapped"):
        raise conflict("restore is only possible into an empty cluster")
    restored = StateData.from_dict(args["state"])
    members = data.members
    for name in vars(restored):
        setattr(data, name, getattr(restored, name))
    data.members = members
    data.meta["restored_from_revision"] = restored.revision
    return {"restored": True, "revision": restored.revision}
