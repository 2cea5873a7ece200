"""Changing a port's security groups after its instance was made (``port.update``).

The groups must be the tenant's and in the port's VPC (checked here in apply, so a group deleted meanwhile is
refused, never half-applied). The ``sg_ports`` index follows, and the VPC's ``net_rev`` moves, so every host
of the VPC gets a new network document: the port's own host recompiles its rules, the others the groups'
member lists that remote-group rules use.
"""

from __future__ import annotations

from typing import Any

from controller.state import netindex
from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import invalid, not_found
from controller.state.registry import handles

MAX_GROUPS = 16


def check_groups(data: StateData, port: dict[str, Any], sg_ids: list[str]) -> list[str]:
    """The groups, each once in the order given; 404 for a group not the tenant's, 422 for another VPC's."""
    wanted = list(dict.fromkeys(sg_ids))
    if not wanted:
        raise invalid("a port needs at least one security group")
    if len(wanted) > MAX_GROUPS:
        raise invalid(f"a port may have at most {MAX_GROUPS} security groups, not {len(wanted)}")
    for sg_id in wanted:
        sg = data.security_groups.get(sg_id)
        if sg is None or sg["tenant_id"] != port["tenant_id"]:
            raise not_found("security group", sg_id)
        if sg["vpc_id"] != port["vpc_id"]:
            here = data.vpcs.get(sg["vpc_id"], {}).get("name", sg["vpc_id"])
            there = data.vpcs.get(port["vpc_id"], {}).get("name", port["vpc_id"])
            raise invalid(f"security group {sg['name']} is in vpc {here}; port {port['id']} is in vpc {there}")
    return wanted


@handles("port.update")
def update_port(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    port = data.ports.get(args["id"])
    if port is None or port["tenant_id"] != args["tenant_id"]:
        raise not_found("port", args["id"])
    wanted = check_groups(data, port, args["sg_ids"])
    if wanted == port["security_groups"]:
        return port
    for sg_id in port["security_groups"]:
        members = data.sg_ports.get(sg_id)
        if members is not None:
            members.pop(port["id"], None)
            if not members:
                del data.sg_ports[sg_id]
    for sg_id in wanted:
        data.sg_ports.setdefault(sg_id, {})[port["id"]] = port["ip"]
    port["security_groups"] = wanted
    netindex.touch_vpc(data, port["vpc_id"])
    return port
