"""VPCs (with their VNI and default security group), subnets and peerings.

Names are unique per tenant (VPCs, subnets); the VNI is the lowest free one, chosen here in apply; subnets
lie inside their VPC and never overlap another subnet of it; peered VPCs belong to one tenant and do not
overlap. The proposer supplies every id (the VPC's, its default group's and that group's rules').
"""

from __future__ import annotations

import ipaddress
from typing import Any

from controller.state import ipam, netindex, security_groups
from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import conflict, invalid, not_found
from controller.state.registry import handles

DEFAULT_NAME = "default"
DEFAULT_VPC_CIDR = "10.0.0.0/16"
DEFAULT_SUBNET_CIDR = "10.0.0.0/24"


def get_vpc(data: StateData, tenant_id: str, vpc_id: str) -> dict[str, Any]:
    vpc = data.vpcs.get(vpc_id)
    if vpc is None or vpc["tenant_id"] != tenant_id:
        raise not_found("vpc", vpc_id)
    return vpc


def get_subnet(data: StateData, tenant_id: str, subnet_id: str) -> dict[str, Any]:
    subnet = data.subnets.get(subnet_id)
    if subnet is None or subnet["tenant_id"] != tenant_id:
        raise not_found("subnet", subnet_id)
    return subnet


def _fresh_id(data: StateData, table: dict[str, Any], ident: str, kind: str) -> None:
    if ident in table:
        raise conflict(f"{kind} id {ident!r} already exists")


def check_vpc(data: StateData, args: dict[str, Any]) -> ipaddress.IPv4Network:
    """Everything insert_vpc would refuse, without changing anything."""
    tenant_id = args["tenant_id"]
    if tenant_id not in data.tenants:
        raise not_found("tenant", tenant_id)
    net = ipam.parse_cidr(args["cidr"])
    if args["name"] in data.vpc_names.get(tenant_id, {}):
        raise conflict(f"vpc {args['name']!r} already exists")
    _fresh_id(data, data.vpcs, args["id"], "vpc")
    _fresh_id(data, data.security_groups, args["default_sg"]["id"], "security group")
    ipam.next_vni(data)
    return net


def insert_vpc(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    net = check_vpc(data, args)
    vni = ipam.next_vni(data)
    tenant_id = args["tenant_id"]
    vpc: dict[str, Any] = {
        "id": args["id"], "name": args["name"], "tenant_id": tenant_id, "cidr": str(net), "vni": vni,
        "default_sg_id": args["default_sg"]["id"], "subnet_ids": [], "sg_ids": [], "peering_ids": [],
        "net_rev": data.revision, "created_at": ctx["time"], "created_by": ctx.get("actor_name", ""),
    }
    data.vpcs[vpc["id"]] = vpc
    data.vpc_names.setdefault(tenant_id, {})[vpc["name"]] = vpc["id"]
    data.vnis[str(vni)] = vpc["id"]
    security_groups.insert_default(data, vpc, args["default_sg"], ctx)
    return vpc


@handles("vpc.create")
def create_vpc(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    return insert_vpc(data, args, ctx)


@handles("vpc.delete")
def delete_vpc(data: StateData, args: dict[str, Any], ctx: CommandContext) -> None:
    """Refused while the VPC has ports or peerings; its (empty) subnets and its groups go with it."""
    vpc = get_vpc(data, args["tenant_id"], args["id"])
    ports = data.vpc_ports.get(vpc["id"], {})
    if ports:
        first = data.ports[next(iter(ports))]
        instance = data.instances.get(first["instance_id"], {}).get("name", first["instance_id"])
        raise conflict(f"vpc {vpc['name']} still has {len(ports)} port(s) in use (e.g. instance {instance!r}); "
                       "delete those instances first")
    if vpc["peering_ids"]:
        raise conflict(f"vpc {vpc['name']} is peered ({', '.join(vpc['peering_ids'])}); delete the peering first")
    for subnet_id in list(vpc["subnet_ids"]):
        _drop_subnet(data, data.subnets[subnet_id])
    for sg_id in list(vpc["sg_ids"]):
        security_groups.drop(data, data.security_groups[sg_id])
    del data.vpcs[vpc["id"]]
    data.vpc_names.get(vpc["tenant_id"], {}).pop(vpc["name"], None)
    data.vnis.pop(str(vpc["vni"]), None)
    data.vpc_ports.pop(vpc["id"], None)


# -- subnets ----------------------------------------------------------------------------------------------
def check_subnet(data: StateData, args: dict[str, Any], vpc: dict[str, Any] | None = None) -> ipaddress.IPv4Network:
    tenant_id = args["tenant_id"]
    if vpc is None:
        vpc = get_vpc(data, tenant_id, args["vpc_id"])
    net = ipam.parse_cidr(args["cidr"])
    vpc_net = ipaddress.IPv4Network(vpc["cidr"])
    if not net.subnet_of(vpc_net):
        raise invalid(f"subnet {net} is not inside vpc {vpc['name']} ({vpc_net})")
    for other_id in vpc["subnet_ids"]:
        other = data.subnets[other_id]
        if net.overlaps(ipaddress.IPv4Network(other["cidr"])):
            raise conflict(f"subnet {net} overlaps subnet {other['name']} ({other['cidr']}) of vpc {vpc['name']}")
    if args["name"] in data.subnet_names.get(tenant_id, {}):
        raise conflict(f"subnet {args['name']!r} already exists")
    _fresh_id(data, data.subnets, args["id"], "subnet")
    return net


def insert_subnet(data: StateData, args: dict[str, Any], ctx: CommandContext,
                  vpc: dict[str, Any] | None = None) -> dict[str, Any]:
    net = check_subnet(data, args, vpc)
    vpc = data.vpcs[args["vpc_id"]]
    subnet: dict[str, Any] = {
        "id": args["id"], "name": args["name"], "tenant_id": args["tenant_id"], "vpc_id": vpc["id"],
        "cidr": str(net), "nat_outbound": bool(args.get("nat_outbound", False)), "created_at": ctx["time"],
        **ipam.new_subnet_pool(net),
    }
    data.subnets[subnet["id"]] = subnet
    data.subnet_names.setdefault(subnet["tenant_id"], {})[subnet["name"]] = subnet["id"]
    vpc["subnet_ids"].append(subnet["id"])
    netindex.touch_vpc(data, vpc["id"])
    return subnet


@handles("subnet.create")
def create_subnet(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    return insert_subnet(data, args, ctx)


@handles("subnet.update")
def update_subnet(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    subnet = get_subnet(data, args["tenant_id"], args["id"])
    if "nat_outbound" in args:
        subnet["nat_outbound"] = bool(args["nat_outbound"])
    netindex.touch_vpc(data, subnet["vpc_id"])
    return subnet


@handles("subnet.delete")
def delete_subnet(data: StateData, args: dict[str, Any], ctx: CommandContext) -> None:
    subnet = get_subnet(data, args["tenant_id"], args["id"])
    if subnet["allocated"]:
        raise conflict(f"subnet {subnet['name']} still has {len(subnet['allocated'])} port(s) in use; "
                       "delete those instances first")
    _drop_subnet(data, subnet)


def _drop_subnet(data: StateData, subnet: dict[str, Any]) -> None:
    del data.subnets[subnet["id"]]
    data.subnet_names.get(subnet["tenant_id"], {}).pop(subnet["name"], None)
    vpc = data.vpcs.get(subnet["vpc_id"])
    if vpc is not None and subnet["id"] in vpc["subnet_ids"]:
        vpc["subnet_ids"].remove(subnet["id"])
        netindex.touch_vpc(data, vpc["id"])


# -- peerings -----------------------------------------------------------------------------------------------
@handles("peering.create")
def create_peering(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    tenant_id = args["tenant_id"]
    vpc = get_vpc(data, tenant_id, args["vpc_id"])
    peer = get_vpc(data, tenant_id, args["peer_vpc_id"])
    if vpc["id"] == peer["id"]:
        raise invalid("a vpc cannot be peered with itself")
    if ipaddress.IPv4Network(vpc["cidr"]).overlaps(ipaddress.IPv4Network(peer["cidr"])):
        raise conflict(f"vpc {vpc['name']} ({vpc['cidr']}) and vpc {peer['name']} ({peer['cidr']}) overlap; "
                       "only VPCs with disjoint CIDRs can be peered")
    if peer["id"] in netindex.peers_of(data, vpc["id"]):
        raise conflict(f"vpc {vpc['name']} and vpc {peer['name']} are already peered")
    _fresh_id(data, data.peerings, args["id"], "peering")
    peering = {"id": args["id"], "tenant_id": tenant_id, "vpc_id": vpc["id"], "peer_vpc_id": peer["id"],
               "created_at": ctx["time"]}
    data.peerings[peering["id"]] = peering
    for side in (vpc, peer):
        side["peering_ids"].append(peering["id"])
        netindex.touch_vpc(data, side["id"])
    return peering


@handles("peering.delete")
def delete_peering(data: StateData, args: dict[str, Any], ctx: CommandContext) -> None:
    peering = data.peerings.get(args["id"])
    if peering is None or peering["tenant_id"] != args["tenant_id"]:
        raise not_found("peering", args["id"])
    del data.peerings[peering["id"]]
    for vpc_id in (peering["vpc_id"], peering["peer_vpc_id"]):
        vpc = data.vpcs.get(vpc_id)
        if vpc is not None and peering["id"] in vpc["peering_ids"]:
            vpc["peering_ids"].remove(peering["id"])
            netindex.touch_vpc(data, vpc_id)
