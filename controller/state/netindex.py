"""Derived network indexes and revisions, kept in apply, so a host's network document is cheap to find and
to tell apart from the one its netd already has.

A host's document depends on the VPCs of its ports and the VPCs peered with those. Every change to a VPC
(ports, subnets, security groups, peerings, a member host's VTEP) sets that VPC's ``net_rev`` to the current
revision; changes to what one host runs (a port placed on it or taken off) set the host's own ``rev``. The
document's revision is the highest of those (``host_revision``): no scan of other hosts.
"""

from __future__ import annotations

from typing import Any

from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import invalid
from controller.state.registry import handles

PORT_STATES = ("active", "error")


def net_host(data: StateData, host_id: str) -> dict[str, Any]:
    return data.net_hosts.setdefault(host_id, {"vtep": "", "backend": "", "rev": 0})


def touch_vpc(data: StateData, vpc_id: str) -> None:
    vpc = data.vpcs.get(vpc_id)
    if vpc is not None:
        vpc["net_rev"] = data.revision


def touch_host(data: StateData, host_id: str | None) -> None:
    if host_id:
        net_host(data, host_id)["rev"] = data.revision


def peers_of(data: StateData, vpc_id: str) -> list[str]:
    vpc = data.vpcs.get(vpc_id)
    if vpc is None:
        return []
    out = []
    for peering_id in vpc["peering_ids"]:
        peering = data.peerings[peering_id]
        out.append(peering["peer_vpc_id"] if peering["vpc_id"] == vpc_id else peering["vpc_id"])
    return out


def host_vpc_set(data: StateData, host_id: str) -> list[str]:
    """The VPCs of the host's ports, then the VPCs peered with them (each once, in a stable order)."""
    own = sorted(data.host_vpcs.get(host_id, {}))
    seen = set(own)
    out = list(own)
    for vpc_id in own:
        for peer in peers_of(data, vpc_id):
            if peer not in seen:
                seen.add(peer)
                out.append(peer)
    return out


def host_revision(data: StateData, host_id: str) -> int:
    rev = int(data.net_hosts.get(host_id, {}).get("rev", 0))
    for vpc_id in host_vpc_set(data, host_id):
        rev = max(rev, int(data.vpcs[vpc_id]["net_rev"]))
    return rev


def _port_of(data: StateData, instance: dict[str, Any]) -> dict[str, Any] | None:
    port_id = instance.get("port_id")
    return data.ports.get(port_id) if port_id else None


def placed(data: StateData, instance: dict[str, Any]) -> None:
    """The instance was placed on ``instance["host_id"]`` (called by placements.claim and on port attach)."""
    port = _port_of(data, instance)
    host_id = instance.get("host_id")
    if port is None or not host_id:
        return
    counts = data.host_vpcs.setdefault(host_id, {})
    counts[port["vpc_id"]] = counts.get(port["vpc_id"], 0) + 1
    touch_vpc(data, port["vpc_id"])
    touch_host(data, host_id)


def unplaced(data: StateData, instance: dict[str, Any]) -> None:
    """The instance is being taken off its host (called by placements.release before host_id is cleared)."""
    port = _port_of(data, instance)
    host_id = instance.get("host_id")
    if port is None or not host_id:
        return
    counts = data.host_vpcs.get(host_id, {})
    left = counts.get(port["vpc_id"], 0) - 1
    if left > 0:
        counts[port["vpc_id"]] = left
    else:
        counts.pop(port["vpc_id"], None)
        if not counts:
            data.host_vpcs.pop(host_id, None)
    touch_vpc(data, port["vpc_id"])
    touch_host(data, host_id)


@handles("net.host_report")
def host_report(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """What a host's netd reports: its VTEP and backend (when they change) and port states (only changes)."""
    host_id = args["host_id"]
    if host_id not in data.hosts:
        raise invalid(f"unknown host {host_id!r}")
    entry = net_host(data, host_id)
    if "vtep" in args and (args["vtep"], args["backend"]) != (entry["vtep"], entry["backend"]):
        entry["vtep"], entry["backend"] = args["vtep"], args["backend"]
        for vpc_id in data.host_vpcs.get(host_id, {}):  # the other hosts of these VPCs tunnel to it
            touch_vpc(data, vpc_id)
    applied = 0
    for item in args.get("ports", []):
        port = data.ports.get(item["port_id"])
        if port is None or item["state"] not in PORT_STATES:
            continue
        instance = data.instances.get(port["instance_id"])
        if instance is None or instance.get("host_id") != host_id:
            continue
        port["state"] = item["state"]
        port["error"] = item.get("error")
        applied += 1
    return {"applied": applied}
